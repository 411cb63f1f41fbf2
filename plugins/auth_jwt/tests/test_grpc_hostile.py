"""Issue 13 through the real gRPC server (TLS, proxy, enclave process): control characters in
``sub``, the high-s twin of a signature, and a wrong-secret flood against a known API-token id.
Every refusal has its status, and the enclave's own signature counter moves only for the holder."""

from __future__ import annotations

import itertools
import time

import grpc
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from swqos_auth_jwt import issuer
from swqos_auth_jwt.api_tokens import create_token
from swqos_auth_jwt.jwt_auth import P256_N
from swqos_auth_jwt.strict import b64url_decode, b64url_encode
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack

from .authjwt_helpers import compact

U, R = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED
TEST_IP = {"swqos": {"plugins": ["auth_jwt", "testing"], "allow_test_plugins": True},
           "pipeline": {"client_ip": ["test_header"]}}
_ips = (f"198.18.{i // 250}.{i % 250 + 1}" for i in itertools.count())


def ip(addr: str | None = None) -> list[tuple[str, str]]:
    return [("x-test-client-ip", addr or next(_ips))]


def low_and_high(tok: str) -> tuple[str, str]:
    h, c, sig = tok.split(".")
    raw = b64url_decode(sig)
    s = int.from_bytes(raw[32:], "big")
    twin = f"{h}.{c}.{b64url_encode(raw[:32] + (P256_N - s).to_bytes(32, 'big'))}"
    return (tok, twin) if s <= P256_N // 2 else (twin, tok)


async def test_sub_outside_printable_ascii_and_high_s_twins_through_the_real_server(tmp_path):
    async with running_stack(tmp_path, proxy=TEST_IP) as stack:
        key = load_pem_private_key((stack.dev_dir / "issuer.key").read_bytes(), None)
        aud = issuer.dev_audience(stack.dev_dir)
        now = int(time.time())

        def tok(sub: str, jti: str) -> str:
            return compact({"alg": "ES256", "typ": "JWT", "kid": "dev-1"},
                           {"iss": "swqos-dev", "sub": sub, "aud": aud, "iat": now, "exp": now + 300, "jti": jti}, key)

        before = await stack.signatures_made()
        for i, sub in enumerate(["trader\n1", "trader-1\x1b[2K", "tr\u00e5der", "\u202etrader", "trader 1"]):
            r = await stack.sign(valid_cv(), token=tok(sub, f"ctl-{i}"), metadata=ip())
            assert r.code == U, (sub, r.code, r.details)
            assert r.details.startswith("jwt step 6 (claims)") and sub not in r.details
        assert await stack.signatures_made() == before

        # the high-s twin of a revoked token is refused, and nothing is signed
        jwt_auth = next(a for a in stack.proxy.pipeline.auth if a.name == "jwt")
        low, high = low_and_high(tok("trader-7", "jti-seven"))
        jwt_auth.revoke_token("jti-seven")
        for t in (high, low):
            r = await stack.sign(valid_cv(), token=t, metadata=ip())
            assert r.code == U and "revoked" in r.details
        assert await stack.signatures_made() == before

        # the twin of a valid token is the same token: signs, with one cache entry for both spellings
        jwt_auth.restore_token("jti-seven")
        entries = len(jwt_auth.cache)
        for t in (high, low, high):
            r = await stack.sign(valid_cv(), token=t, metadata=ip())
            assert r.code == grpc.StatusCode.OK, r.details
        assert await stack.signatures_made() == before + 3
        assert len(jwt_auth.cache) == entries  # the entry made while revoked, under the low spelling
        assert f"Bearer {low}" in jwt_auth.cache._d and f"Bearer {high}" not in jwt_auth.cache._d


async def test_api_token_flood_against_a_known_id_through_the_real_server(tmp_path):
    store = tmp_path / "tokens.json"
    token, rec = create_token(store, "bot-1", "trader")
    # cache off, so the holder pays Argon2 on every call too; a generous deadline keeps this test
    # about status codes on a shared 2-core machine, not speed (the benchmark measures that)
    proxy = {**TEST_IP, "proxy": {"deadline_ms": 5000}, "pipeline": {**TEST_IP["pipeline"], "auth": ["jwt", "api_token"]},
             "layers": {"auth": {"api_token": {"store": str(store), "accept_roles": ["trader"], "cache_size": 0,
                                               "under_attack_verifications_per_second": 0.01}}}}
    async with running_stack(tmp_path, proxy=proxy) as stack:
        holder = "203.0.113.9"
        r = await stack.sign(valid_cv(), token=token, metadata=ip(holder))
        assert r.code == grpc.StatusCode.OK, r.details
        before = await stack.signatures_made()
        codes = []
        for i in range(25):  # wrong secrets for the public id, each from a new address
            wrong = f"swqat_{rec.id}_{b64url_encode(i.to_bytes(32, 'big'))}"
            r = await stack.sign(valid_cv(), token=wrong, metadata=ip())
            codes.append(r.code)
            if r.code == R:
                assert r.details == "api token: too many failed attempts for this token; retry later"
                assert 0 < float(r.trailing["retry-after"]) <= 100
        assert codes[:5] == [U] * 5
        assert codes.count(R) >= 15  # from then on refused before Argon2 (one stranger per 100 s may try)
        assert grpc.StatusCode.PERMISSION_DENIED not in codes  # no verdict on the id, only a rate
        assert await stack.signatures_made() == before
        # the holder, from the address it used before, is not locked out
        for _ in range(3):
            r = await stack.sign(valid_cv(), token=token, metadata=ip(holder))
            assert r.code == grpc.StatusCode.OK, r.details
        assert await stack.signatures_made() == before + 3
