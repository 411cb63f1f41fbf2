"""The public listener's transport limits, through a real stack: streams that never send a body,
slow TLS handshakes, a connection cap, concurrent calls. (A second proxy on the same address:
tests/kernel/test_workers.py, with real processes.)"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

import grpc
import pytest

from swqos_proto import SERVICE, signer_pb2
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack


async def test_a_stream_that_never_sends_its_body_is_ended_by_the_deadline(tmp_path):
    async with running_stack(tmp_path) as stack:
        before = await stack.signatures_made()
        async with stack.channel() as channel:
            call = channel.stream_unary(f"/{SERVICE}/SignCertificateVerify")
            never = asyncio.Event()

            async def silent():
                await never.wait()
                yield b""  # never reached

            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(silent(), metadata=(("authorization", f"Bearer {stack.token('t')}"),), timeout=30)
            elapsed = time.monotonic() - started
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert elapsed < 2.0  # the 100 ms deadline runs from the stream's arrival, not the body's
        assert await stack.signatures_made() == before


async def test_two_request_messages_on_one_call_are_refused(tmp_path):
    async with running_stack(tmp_path) as stack:
        body = signer_pb2.SignCertificateVerifyRequest(payload=valid_cv()).SerializeToString()
        async with stack.channel() as channel:
            call = channel.stream_unary(f"/{SERVICE}/SignCertificateVerify")

            async def two():
                yield body
                yield body

            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(two(), metadata=(("authorization", f"Bearer {stack.token('t')}"),), timeout=5)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert await stack.signatures_made() == 0


async def test_a_tcp_connection_that_never_handshakes_is_dropped(tmp_path):
    async with running_stack(tmp_path, proxy={"proxy": {"tls_handshake_timeout_ms": 300}}) as stack:
        port = stack.target.rsplit(":", 1)[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
        started = time.monotonic()
        data = await asyncio.wait_for(reader.read(), 5)  # the server closes it: EOF
        assert data == b"" and time.monotonic() - started < 3
        writer.close()


async def test_connections_past_the_cap_are_closed_and_the_first_ones_keep_working(tmp_path):
    async with running_stack(tmp_path, proxy={"proxy": {"max_connections": 2}}) as stack:
        _, port = stack.target.rsplit(":", 1)
        ctx = ssl.create_default_context(cafile=str(stack.dev_dir / "ca.pem"))
        ctx.set_alpn_protocols(["h2"])
        held = []
        for _ in range(2):
            held.append(await asyncio.open_connection("127.0.0.1", int(port), ssl=ctx, server_hostname="localhost"))
        refused = False
        try:
            reader, _ = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", int(port), ssl=ctx, server_hostname="localhost"), 5)
            refused = await asyncio.wait_for(reader.read(), 5) == b""
        except (ConnectionError, ssl.SSLError, OSError):
            refused = True
        assert refused
        for _, w in held:
            w.close()
        deadline = time.monotonic() + 10  # the quota is given back once the server has closed them
        while (code := (await stack.sign(valid_cv(), token=stack.token("t"))).code) is not grpc.StatusCode.OK:
            assert code is grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
            await asyncio.sleep(0.2)


async def test_calls_past_max_concurrent_rpcs_are_refused_at_once_with_a_label(tmp_path):
    cfg = {"proxy": {"max_concurrent_rpcs": 1, "deadline_ms": 3000}}
    async with running_stack(tmp_path, proxy=cfg) as stack:
        token = stack.token("t")
        hold = stack.channel().stream_unary(f"/{SERVICE}/SignCertificateVerify")  # the stack's channel: not closed here
        never = asyncio.Event()

        async def silent():
            await never.wait()
            yield b""  # never reached

        held = asyncio.ensure_future(hold(silent(), metadata=(("authorization", f"Bearer {token}"),), timeout=10))
        await asyncio.sleep(0.3)  # the first call now holds the only slot
        refused = await stack.sign(valid_cv(), token=token)
        held.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await held
        assert refused.code is grpc.StatusCode.RESOURCE_EXHAUSTED and "too many calls" in refused.details
        assert dict(refused.trailing).get("retry-after")
        assert await stack.signatures_made() == 0
        assert (await stack.sign(valid_cv(), token=token)).code is grpc.StatusCode.OK  # the slot came back
