"""Three host-proxies, one Redis, one enclave (real processes, real gRPC over TLS 1.3).

A trader's quota holds across the three; a ban made on one refuses on the others within 1 s; an
admin revocation through any replica applies on all within 1 s; when redis-server stops, signing
halts (NOT_SERVING, UNAVAILABLE, nothing signed) and comes back by itself when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import pytest

from swqos_core import config
from swqos_core.extensions import Actor
from swqos_core.server import start_proxy
from swqos_dev import devstack
from swqos_testing.configs import merge
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import Stack

TRADER_BURST = 30
CV = valid_cv()


class Replica(Stack):
    """Another host-proxy on the same dev dir and enclave: closing it leaves the enclave running."""

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self.proxy is not None:
            await self.proxy.stop(None)


@contextlib.asynccontextmanager
async def fleet(tmp_path: Path, redis_server, **store_settings):
    dev = devstack.prepare(tmp_path / "dev")
    data = devstack.proxy_config(dev, "127.0.0.1:0", without=["ratelimit"])
    data["swqos"]["plugins"] = [*data["swqos"]["plugins"], "ratelimit", "state", "testing"]
    data["swqos"]["allow_test_plugins"] = True
    loose = {"count": 100_000, "period": 1, "burst": 100_000}
    data = merge(data, {
        "proxy": {"enclave_ping_interval": 0.2},
        "pipeline": {"store": "redis", "client_ip": ["test_header"], "rate_limit": ["gcra"]},
        "layers": {
            "store": {"redis": redis_server.settings(replicas=3, **store_settings)},
            "rate_limit": {"gcra": {
                "address": loose, "handshakes": loose, "address_56": loose, "address_48": loose,
                "handshakes_56": loose, "handshakes_48": loose,
                "trader": {"count": TRADER_BURST, "period": 3600, "burst": TRADER_BURST},
            }},
        },
    })
    devstack.write_toml(dev.config, data)
    devstack.write_toml(dev.enclave_config, devstack.enclave_config(dev))
    first = Stack(dev, dev.enclave_config)
    replicas: list[Stack] = [first]
    try:
        await first.start_enclave()
        for i in range(3):
            r = first if i == 0 else Replica(dev, dev.enclave_config)
            r.proxy = await start_proxy(config.load(dev.config, process="proxy"))
            if i:
                replicas.append(r)
            await r.wait_serving()
        yield replicas
    finally:
        for r in reversed(replicas):
            await r.close()


def ip(addr: str) -> list[tuple[str, str]]:
    return [("x-test-client-ip", addr)]


async def until(check, timeout: float) -> float:
    """Seconds until ``check()`` (a coroutine function) is true; AssertionError after ``timeout``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        if loop.time() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.02)
    return loop.time() - start


@pytest.mark.slow
async def test_quota_ban_and_revocation_hold_across_three_replicas(tmp_path, redis_server):
    async with fleet(tmp_path, redis_server) as (a, b, c):
        token = a.token("trader-q")
        before = await a.signatures_made()
        codes, details = [], []
        for i in range(3 * TRADER_BURST):
            r = await (a, b, c)[i % 3].sign(CV, token=token, metadata=ip("203.0.113.10"))
            codes.append(r.code)
            details.append((r.code.name, r.details))
        ok = codes.count(grpc.StatusCode.OK)
        # One quota for the fleet, not one per replica (which would admit all 90).
        assert abs(ok - TRADER_BURST) <= TRADER_BURST // 10, (ok, sorted(set(details)))
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert await a.signatures_made() - before == ok

        # 20 bad credentials through replica a ban the address; b and c refuse it within 1 s.
        stranger = "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vIn0.e30.AAAA"
        for _ in range(20):
            await a.sign(CV, token=stranger, metadata=ip("198.51.100.66"))

        async def refused_on(replica) -> bool:
            # A fresh (never verified, so never cached) valid token each time: the ban refuses it
            # before any verification.
            r = await replica.sign(CV, token=replica.token("trader-b"), metadata=ip("198.51.100.66"))
            return r.code == grpc.StatusCode.PERMISSION_DENIED and "banned" in r.details

        assert await until(lambda: refused_on(b), 1.0) <= 1.0
        assert await until(lambda: refused_on(c), 1.0) <= 1.0
        assert (await b.sign(CV, token=b.token("trader-b"), metadata=ip("198.51.100.67"))).code == grpc.StatusCode.OK

        # An admin revocation through replica b applies on a and c within 1 s.
        victim = a.token("trader-r")
        assert (await a.sign(CV, token=victim, metadata=ip("203.0.113.20"))).code == grpc.StatusCode.OK
        op = b.proxy.app.contributions.admin_operations["revoke-trader"][1]
        await op.handler({"sub": "trader-r"}, Actor("token", "ops", "t1"))

        async def revoked_on(replica) -> bool:
            r = await replica.sign(CV, token=victim, metadata=ip("203.0.113.20"))
            return r.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) and "revoked" in r.details

        assert await revoked_on(b)  # applied at once on the replica that made the change
        assert await until(lambda: revoked_on(a), 1.0) <= 1.0
        assert await until(lambda: revoked_on(c), 1.0) <= 1.0
        signed = await a.signatures_made()
        for replica in (a, b, c):
            assert await revoked_on(replica)
        assert await a.signatures_made() == signed  # refused on every replica: nothing signed
        records = await a.proxy.app.one("store").policy_records("auth_jwt.revoked")
        assert [(r.key, r.actor) for r in records] == [("sub:trader-r", "token:ops (t1)")]


@pytest.mark.slow
async def test_redis_outage_halts_signing_and_recovers_without_restart(tmp_path, redis_server):
    async with fleet(tmp_path, redis_server, grace_seconds=0.3) as (a, b, c):
        token = a.token("trader-o")
        assert (await a.sign(CV, token=token, metadata=ip("203.0.113.30"))).code == grpc.StatusCode.OK
        redis_server.stop()
        for replica in (a, b, c):
            await replica.wait_serving(False, timeout=5)
        before = await a.signatures_made()
        for replica in (a, b, c):
            r = await replica.sign(CV, token=token, metadata=ip("203.0.113.30"))
            assert r.code == grpc.StatusCode.UNAVAILABLE, r
        assert await a.signatures_made() == before
        redis_server.start()
        for replica in (a, b, c):
            await replica.wait_serving(True, timeout=5)
        assert (await c.sign(CV, token=token, metadata=ip("203.0.113.30"))).code == grpc.StatusCode.OK


@pytest.mark.slow
async def test_metrics_and_status_name_the_store(tmp_path, redis_server):
    async with fleet(tmp_path, redis_server) as (a, _b, _c):
        app = a.proxy.app
        [(_, collector)] = [(o, c) for o, c in app.contributions.metrics if o == "state"]
        samples = {(name, labels): value for name, labels, value in collector.collect()}
        assert samples[("swqos_state_store_available", ("redis",))] == 1.0
        owner, report = app.contributions.status["state_store"]
        assert owner == "state" and report()["available"] is True
