"""The gcra limiter in a real stack: real gRPC over TLS 1.3, real JWT verification, a real enclave.

Client addresses vary over loopback through the ``cloudflare`` resolver with 127.0.0.0/8 as a
trusted edge, so ``cf-connecting-ip`` decides the address exactly as it would behind the CDN.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from swqos_testing.payloads import valid_cv
from swqos_testing.stack import merge, running_stack

LOOSE = {"count": 100_000, "period": 1.0, "burst": 100_000}


def proxy_config(gcra: dict) -> dict:
    table = merge({"address": LOOSE, "handshakes": LOOSE, "trader": LOOSE,
                   "trader_sustained": {"count": 1_000_000, "period": 3600.0, "burst": 1_000_000}}, gcra)
    return {
        "swqos": {"plugins": ["auth_jwt", "ratelimit", "cdn_cloudflare"]},
        "pipeline": {"client_ip": ["cloudflare"], "rate_limit": ["gcra"]},
        "layers": {
            # staging-style: a loopback edge naming documentation-range clients
            "client_ip": {"cloudflare": {"extra_trusted_ranges": ["127.0.0.0/8", "::1/128"], "allow_non_global": True}},
            "rate_limit": {"gcra": table},
        },
    }


def from_ip(ip: str) -> list[tuple[str, str]]:
    return [("cf-connecting-ip", ip)]


def retry_after(result) -> float:
    return float(result.trailing["retry-after"])


async def test_burst_beyond_the_handshake_quota(tmp_path):
    # 5 handshakes per 10 minutes: T = 120 s, so every retry-after is at most 120 s and well above 60.
    gcra = {"handshakes": {"count": 5, "period": 600.0, "burst": 5}}
    async with running_stack(tmp_path, proxy=proxy_config(gcra)) as stack:
        token = stack.token(sub="trader-1")
        before = await stack.signatures_made()
        results = [await stack.sign(valid_cv(), token=token, metadata=from_ip("203.0.113.5")) for _ in range(8)]
        assert [r.code for r in results] == [grpc.StatusCode.OK] * 5 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
        for r in results[5:]:
            assert "handshakes" in r.details
            assert 60.0 < retry_after(r) <= 120.0
            assert r.trailing["retry-after"].count(".") == 1 and len(r.trailing["retry-after"].split(".")[1]) == 3
        assert await stack.signatures_made() == before + 5
        # Another address is not affected; GetIdentity needs no handshake slot.
        assert (await stack.sign(valid_cv(), token=token, metadata=from_ip("203.0.113.6"))).code is grpc.StatusCode.OK
        ident = await stack.identity(b"n" * 16, token=token, metadata=from_ip("203.0.113.5"))
        assert ident.code is grpc.StatusCode.OK


async def test_address_rate_refuses_before_authentication(tmp_path):
    gcra = {"address": {"count": 1, "period": 600.0, "burst": 2}}
    async with running_stack(tmp_path, proxy=proxy_config(gcra)) as stack:
        before = await stack.signatures_made()
        bad = [await stack.sign(valid_cv(), token="not-a-jwt", metadata=from_ip("198.51.100.20")) for _ in range(4)]
        # The first two reach the verifier (and fail it); the rest never get that far.
        assert [r.code for r in bad] == [grpc.StatusCode.UNAUTHENTICATED] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
        assert all("too many requests from this address" in r.details for r in bad[2:])
        assert all(0 < retry_after(r) <= 600.0 for r in bad[2:])
        assert await stack.signatures_made() == before


async def test_flood_from_one_address_does_not_touch_a_trader_elsewhere(tmp_path):
    # 5/s per address (burst 5). The flooder sends 10x that; the victim 4/s from another address.
    gcra = {"address": {"count": 5, "period": 1.0, "burst": 5}, "handshakes": {"count": 5, "period": 1.0, "burst": 5}}
    async with running_stack(tmp_path, proxy=proxy_config(gcra)) as stack:
        flood_token, victim_token = stack.token(sub="flooder"), stack.token(sub="victim")
        before = await stack.signatures_made()
        stop = asyncio.Event()
        flood_codes: list[grpc.StatusCode] = []

        async def flooder() -> None:
            while not stop.is_set():
                batch = await asyncio.gather(*(stack.sign(valid_cv(), token=flood_token,
                                                          metadata=from_ip("198.51.100.66")) for _ in range(5)))
                flood_codes.extend(r.code for r in batch)
                await asyncio.sleep(0.1)  # 5 every 100 ms = 50/s, 10x the quota

        flood_task = asyncio.create_task(flooder())
        started = time.monotonic()
        victim = []
        for _ in range(8):
            victim.append(await stack.sign(valid_cv(), token=victim_token, metadata=from_ip("203.0.113.77")))
            await asyncio.sleep(0.25)
        stop.set()
        await flood_task
        elapsed = time.monotonic() - started

        assert [r.code for r in victim] == [grpc.StatusCode.OK] * 8
        assert set(flood_codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        flood_ok = flood_codes.count(grpc.StatusCode.OK)
        assert flood_codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) > 0
        # GCRA bound: at most burst + rate * time for the flooder, however hard it pushes.
        assert flood_ok <= 5 + 5 * (elapsed + 1)
        assert await stack.signatures_made() == before + 8 + flood_ok


def forged_token(stack, sub: str) -> str:
    """A JWT with every right claim and the dev kid, but signed by a key the proxy does not trust."""
    good = jwt.decode(stack.token(sub=sub), options={"verify_signature": False})
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(good, key, algorithm="ES256", headers={"kid": "dev-1"})


async def test_an_unverified_claimed_sub_never_consumes_that_traders_quota(tmp_path):
    gcra = {"trader": {"count": 1, "period": 600.0, "burst": 3}}
    async with running_stack(tmp_path, proxy=proxy_config(gcra)) as stack:
        before = await stack.signatures_made()
        forged = forged_token(stack, "victim")
        attempts = [await stack.sign(valid_cv(), token=forged, metadata=from_ip(f"198.51.100.{i}")) for i in range(10)]
        assert {r.code for r in attempts} == {grpc.StatusCode.UNAUTHENTICATED}
        assert await stack.signatures_made() == before

        victim = stack.token(sub="victim")
        results = [await stack.sign(valid_cv(), token=victim, metadata=from_ip("203.0.113.10")) for _ in range(4)]
        assert [r.code for r in results] == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert "too many handshakes for this trader" in results[3].details
        assert 0 < retry_after(results[3]) <= 600.0
        assert await stack.signatures_made() == before + 3


async def test_trader_quota_follows_the_trader_across_addresses(tmp_path):
    gcra = {"trader": {"count": 1, "period": 600.0, "burst": 2},
            "traders": {"premium": {"rate": {"count": 1, "period": 600.0, "burst": 4}}}}
    async with running_stack(tmp_path, proxy=proxy_config(gcra)) as stack:
        before = await stack.signatures_made()
        basic, premium = stack.token(sub="basic"), stack.token(sub="premium")
        basic_codes = [(await stack.sign(valid_cv(), token=basic, metadata=from_ip(f"192.0.2.{i}"))).code
                       for i in range(3)]
        premium_codes = [(await stack.sign(valid_cv(), token=premium, metadata=from_ip(f"192.0.2.{i}"))).code
                         for i in range(5)]
        ok, exhausted = grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED
        assert basic_codes == [ok, ok, exhausted]
        assert premium_codes == [ok] * 4 + [exhausted]
        assert await stack.signatures_made() == before + 6


@pytest.mark.slow
async def test_back_pressure_with_the_limiter_enabled(tmp_path):
    """A slow enclave (1 s per signature) and max_enclave_inflight = 2: the rest are refused at
    once with RESOURCE_EXHAUSTED, while the first signature is still being made."""
    enclave = {"swqos": {"plugins": ["payload_tls_cv", "testing"], "allow_test_plugins": True},
               "pipeline": {"signer": "slow_ed25519"},
               "layers": {"signer": {"slow_ed25519": {"delay_ms": 1000}}}}
    proxy = merge(proxy_config({}), {"proxy": {"max_enclave_inflight": 2, "deadline_ms": 5000,
                                                 # pings wait behind the blocking signer: give them time
                                                 "enclave_ping_interval": 3.0}})
    async with running_stack(tmp_path, proxy=proxy, enclave=enclave) as stack:
        token = stack.token(sub="trader-1")
        before = await stack.signatures_made()
        finished: list[grpc.StatusCode] = []

        async def one(i: int):
            r = await stack.sign(valid_cv(), token=token, metadata=from_ip(f"203.0.113.{i}"), timeout=5.0)
            finished.append(r.code)
            return r

        results = await asyncio.gather(*(one(i) for i in range(8)))
        codes = [r.code for r in results]
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}  # never DEADLINE_EXCEEDED
        busy = [r for r in results if r.code is grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert codes.count(grpc.StatusCode.OK) == 2
        assert all("enclave queue full" in r.details and retry_after(r) > 0 for r in busy)
        # Refused fast: every refusal came back before the first signature (1 s) was done.
        first_ok = finished.index(grpc.StatusCode.OK)
        assert finished[:first_ok] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 6
        assert await stack.signatures_made() == before + 2
