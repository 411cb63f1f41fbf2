"""The host's enclave connection against enclaves that misbehave: one that accepts and never
answers, one that answers and then dies with calls in flight. Calls fail with UNAVAILABLE at
once, never wait for their deadline, and nothing is signed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import grpc
import pytest

from swqos_core.enclave.client import EnclaveClient
from swqos_core.enclave.protocol import LENGTH, FrameType, encode, encode_identity, parse_frame
from swqos_core.errors import Rejection
from swqos_core.state import ServiceState

PUBLIC_KEY = bytes(range(32))


@contextlib.asynccontextmanager
async def fake_enclave(path: Path, *, answer_identity: bool, answer_signs: bool = False):
    """A unix-socket server speaking the enclave's framing, as much of it as asked."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                (length,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
                frame = parse_frame(await reader.readexactly(length))
                if frame.type is FrameType.IDENTITY and answer_identity:
                    writer.write(encode(FrameType.IDENTITY_RESULT, frame.request_id, frame.trace_id,
                                        encode_identity(PUBLIC_KEY, 0, None, b"")))
                elif frame.type is FrameType.PING and answer_identity:
                    writer.write(encode(FrameType.PONG, frame.request_id, frame.trace_id, bytes(8)))
                elif frame.type is FrameType.SIGN and answer_signs:
                    writer.write(encode(FrameType.SIGNATURE, frame.request_id, frame.trace_id, bytes(64)))

    server = await asyncio.start_unix_server(handle, str(path))
    try:
        yield writers
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


async def expect_unavailable(client: EnclaveClient) -> float:
    t0 = time.monotonic()
    with pytest.raises(Rejection) as ei:
        async with asyncio.timeout(2.0):
            await client.sign(b"x" * 64, 1)
    assert ei.value.code == grpc.StatusCode.UNAVAILABLE
    return time.monotonic() - t0


async def test_an_enclave_that_accepts_but_never_answers_is_never_used(tmp_path):
    state = ServiceState("test")
    async with fake_enclave(tmp_path / "e.sock", answer_identity=False):
        client = EnclaveClient(f"unix://{tmp_path / 'e.sock'}", state, ping_interval=0.05)
        await client.start()
        try:
            await asyncio.sleep(0.3)  # connected, identity asked, no answer
            assert not state.enclave_connected
            assert await expect_unavailable(client) < 0.05  # refused at once, not at a deadline
        finally:
            await client.close()


async def test_calls_in_flight_when_the_enclave_dies_fail_at_once(tmp_path):
    state = ServiceState("test")
    async with fake_enclave(tmp_path / "e.sock", answer_identity=True) as writers:
        client = EnclaveClient(f"unix://{tmp_path / 'e.sock'}", state, ping_interval=5.0)
        await client.start()
        try:
            for _ in range(100):
                if state.enclave_connected:
                    break
                await asyncio.sleep(0.02)
            assert state.enclave_connected
            waiting = [asyncio.ensure_future(expect_unavailable(client)) for _ in range(5)]
            await asyncio.sleep(0.05)  # sent; this enclave never signs
            assert client.inflight == 5
            writers[0].transport.abort()  # the enclave dies
            took = await asyncio.gather(*waiting)
            assert max(took) < 0.5  # well before the 5 s ping would have noticed
            assert not state.enclave_connected and client.inflight == 0
        finally:
            await client.close()
