"""End to end through the real gRPC server: a signed manifest published on a local HTTPS server
halts the proxy (UNAVAILABLE, nothing signed, health NOT_SERVING), survives a restart, and a newer
manifest lifts it."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from swqos_core import __version__

pytest.importorskip("swqos_testing.stack")
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack

pytestmark = pytest.mark.slow
GUARD = 20.0


def revocation_config(kit, keys, server, state_dir) -> dict:
    return {
        "swqos": {"plugins": ["auth_jwt", "killswitch"]},
        "pipeline": {"revocation": ["https"]},
        "layers": {"revocation": {"https": {
            "url": server.url("/revocation.json"),
            "public_key": str(keys.pub_path) if keys else None,
            "key_id": keys.key_id if keys else None,
            "scope": kit.SCOPE,
            "state_dir": str(state_dir),
            "ca_bundle": str(server.cert),
            "poll_interval": 0.2,
            "connect_timeout": 2.0,
            "total_timeout": 2.0,
        }}},
    }


async def health_status(stack) -> int:
    stub = health_pb2_grpc.HealthStub(stack.channel())
    return (await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status


async def wait_health(stack, status) -> None:
    async with asyncio.timeout(GUARD):
        while await health_status(stack) != status:
            await asyncio.sleep(0.05)


async def test_halt_through_the_real_server_and_lift(kit, keys, server, tmp_path):
    server.publish(*keys.manifest(1, revoked_versions=["0.0.1-old"]))
    state_dir = tmp_path / "ks-state"
    async with running_stack(tmp_path, proxy=revocation_config(kit, keys, server, state_dir)) as stack:
        ok = await stack.sign(valid_cv())
        assert ok.code == grpc.StatusCode.OK
        made = await stack.signatures_made()

        server.publish(*keys.manifest(2, revoked_versions=[__version__], reason="drill"))
        await stack.wait_serving(False, timeout=GUARD)
        r = await stack.sign(valid_cv())
        assert r.code == grpc.StatusCode.UNAVAILABLE
        assert await stack.signatures_made() == made
        await wait_health(stack, health_pb2.HealthCheckResponse.NOT_SERVING)
        assert "is revoked" in stack.state.halt_reasons["kill_switch"]

        server.publish(*keys.manifest(3, revoked_versions=["0.0.1-old"]))
        await stack.wait_serving(True, timeout=GUARD)
        await wait_health(stack, health_pb2.HealthCheckResponse.SERVING)
        r = await stack.sign(valid_cv())
        assert r.code == grpc.StatusCode.OK
        assert await stack.signatures_made() == made + 1


async def test_restart_while_halted_through_the_real_server(kit, keys, server, tmp_path):
    server.publish(*keys.manifest(4, revoked_versions=[__version__]))
    state_dir = tmp_path / "ks-state"
    cfg = revocation_config(kit, keys, server, state_dir)
    async with running_stack(tmp_path / "first", proxy=cfg, wait_serving=False) as stack:
        await stack.wait_serving(False, timeout=GUARD)
        async with asyncio.timeout(GUARD):  # until the v4 halt (not just "no manifest yet") is in force
            while "is revoked" not in stack.state.halt_reasons.get("kill_switch", ""):
                await asyncio.sleep(0.05)
    server.routes.clear()  # the manifest server goes away: only the persisted halt remains
    async with running_stack(tmp_path / "second", proxy=cfg, wait_serving=False) as stack:
        assert "is revoked" in stack.state.halt_reasons["kill_switch"]
        made = await stack.signatures_made()
        r = await stack.sign(valid_cv())
        assert r.code == grpc.StatusCode.UNAVAILABLE
        assert await stack.signatures_made() == made
        await wait_health(stack, health_pb2.HealthCheckResponse.NOT_SERVING)


async def test_threshold_halt_through_the_real_server(kit, root, server, tmp_path):
    """With a trust root: one key cannot halt signing, two can, and a restart stays halted."""
    cfg = revocation_config(kit, None, server, tmp_path / "ks-state")
    https = cfg["layers"]["revocation"]["https"]
    del https["public_key"], https["key_id"]
    https.update(root=str(root.path), root_sha256=root.sha256)
    server.publish(*root.manifest(1, revoked_versions=["0.0.1-old"]))
    async with running_stack(tmp_path / "first", proxy=cfg) as stack:
        made = await stack.signatures_made()
        server.publish(*root.manifest(2, by=[0], revoked_versions=[__version__]))
        src = stack.proxy.app.one("revocation")
        async with asyncio.timeout(GUARD):
            while src.engine.rejected_total["below_threshold"] == 0:
                await asyncio.sleep(0.05)
        r = await stack.sign(valid_cv())
        assert r.code == grpc.StatusCode.OK  # a single stolen key halted nothing
        server.publish(*root.manifest(3, by=[1, 2], revoked_versions=[__version__]))
        await stack.wait_serving(False, timeout=GUARD)
        r = await stack.sign(valid_cv())
        assert r.code == grpc.StatusCode.UNAVAILABLE
        assert await stack.signatures_made() == made + 1
    server.routes.clear()
    async with running_stack(tmp_path / "second", proxy=cfg, wait_serving=False) as stack:
        assert "is revoked" in stack.state.halt_reasons["kill_switch"]
        r = await stack.sign(valid_cv())
        assert r.code == grpc.StatusCode.UNAVAILABLE
