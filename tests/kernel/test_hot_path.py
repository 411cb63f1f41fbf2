"""The cheap versions of what every call does: the call's deadline, sampled stage timings, the
enclave hop's writes and frame parsing. Each keeps the behaviour of what it replaced."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time

import pytest

from swqos_core.enclave.client import EnclaveClient
from swqos_core.enclave.protocol import LENGTH, FrameType, ProtocolError, encode, parse_frame
from swqos_core.layers import ClientAddress
from swqos_core.net import ip_text
from swqos_core.server import Deadline
from swqos_core.state import ServiceState
from swqos_proto import signer_pb2

from .pipeline_helpers import Recorder, make_call, make_pipeline

RAW = signer_pb2.SignCertificateVerifyRequest(payload=b"p" * 130).SerializeToString()


# --- the call's deadline ------------------------------------------------------------------------
async def test_a_deadline_that_passes_ends_the_block_with_timeout_error():
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        with Deadline(t0 + 0.02):
            await asyncio.sleep(5)
    assert time.monotonic() - t0 < 1
    assert asyncio.current_task().cancelling() == 0  # the cancel it used is taken back


async def test_a_deadline_not_reached_leaves_the_task_alone():
    with Deadline(time.monotonic() + 0.05):
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.1)  # past the deadline: its timer was cancelled, nothing fires
    assert asyncio.current_task().cancelling() == 0


async def test_a_cancel_from_elsewhere_is_not_turned_into_a_deadline():
    async def handler() -> None:
        with Deadline(time.monotonic() + 5):
            await asyncio.sleep(5)

    task = asyncio.create_task(handler())
    await asyncio.sleep(0.01)
    task.cancel()  # the client went away, or the server is stopping
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_cancel_from_elsewhere_still_wins_when_the_deadline_also_fires():
    entered = asyncio.Event()

    async def handler() -> None:
        with Deadline(time.monotonic()):  # already due: its timer fires on the next loop turn
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(handler())
    await entered.wait()
    task.cancel()  # in the same turn as the deadline's own cancel
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


# --- sampled stage timings ----------------------------------------------------------------------
@pytest.mark.parametrize(("every", "timed"), [(1, 8), (4, 2), (16, 1), (0, 0)])
async def test_stage_timings_are_taken_for_one_call_in_stage_timing_every(every, timed):
    decisions = []
    pipeline = make_pipeline(Recorder())
    pipeline.observers.append(decisions.append)
    pipeline.stage_timing_every = every
    for _ in range(8):
        await pipeline.sign(make_call(RAW))
    assert len(decisions) == 8  # every call is observed, timed or not
    with_times = [d for d in decisions if d.stage_seconds]
    assert len(with_times) == timed
    for d in with_times:
        assert set(d.stage_seconds) == {s.name for s in pipeline.stages}
    assert all(d.latency >= 0 for d in decisions)


# --- the enclave hop ----------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def recording_enclave(path):
    """An enclave double that records the size of every read and answers every SIGN."""
    reads: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                reads.append(len(data))
                buf += data
                while len(buf) >= LENGTH.size and len(buf) >= LENGTH.size + LENGTH.unpack_from(buf)[0]:
                    end = LENGTH.size + LENGTH.unpack_from(buf)[0]
                    frame = parse_frame(bytes(buf[LENGTH.size:end]))
                    del buf[:end]
                    if frame.type is FrameType.IDENTITY:
                        answer = encode(FrameType.IDENTITY_RESULT, frame.request_id, 0, bytes(32) + bytes(10))
                    else:
                        answer = encode(FrameType.SIGNATURE, frame.request_id, frame.trace_id, b"s" * 64)
                    writer.write(answer)
        writer.close()

    server = await asyncio.start_unix_server(handle, str(path))
    try:
        yield reads
    finally:
        server.close()


async def connected(path) -> EnclaveClient:
    client = EnclaveClient(f"unix://{path}", ServiceState("test"), ping_interval=30)
    await client.start()
    async with asyncio.timeout(5):
        while client._writer is None:
            await asyncio.sleep(0.01)
    return client


async def test_a_frame_alone_in_flight_leaves_at_once_and_many_leave_in_one_write(tmp_path):
    frame_size = LENGTH.size + 13 + 130
    async with recording_enclave(tmp_path / "e.sock") as reads:
        client = await connected(tmp_path / "e.sock")
        try:
            reads.clear()
            alone = asyncio.create_task(client.sign(b"p" * 130, 1))
            await asyncio.sleep(0)  # the task ran up to its wait for the answer, and no further turn
            assert client._outbox == [] and client.inflight == 1  # written in that turn, not queued
            assert await alone == b"s" * 64
            assert reads == [frame_size]
            reads.clear()
            got = await asyncio.gather(*(client.sign(b"p" * 130, i) for i in range(10)))
            assert got == [b"s" * 64] * 10
            # The first left alone; the nine queued behind it in the same turn left together.
            assert sum(reads) == 10 * frame_size and len(reads) <= 2 and reads[-1] >= 9 * frame_size
        finally:
            await client.close()


def test_frames_parse_to_their_type_and_unknown_types_are_protocol_errors():
    frame = parse_frame(encode(FrameType.SIGNATURE, 7, 9, b"s" * 64)[LENGTH.size:])
    assert (frame.type, frame.request_id, frame.trace_id, frame.data) == (FrameType.SIGNATURE, 7, 9, b"s" * 64)
    assert frame.type is FrameType.SIGNATURE
    body = bytearray(encode(FrameType.SIGN, 1, 2, b"x")[LENGTH.size:])
    body[0] = 0x7E
    with pytest.raises(ProtocolError, match="unknown frame type 0x7e"):
        parse_frame(bytes(body))


def test_client_address_text_is_the_address_as_str_spells_it():
    for text in ("203.0.113.7", "2001:db8::1", "::ffff:203.0.113.7"):
        ip = ipaddress.ip_address(text)
        assert ip_text(ip) == str(ip)
        assert str(ClientAddress(ip, "peer", f"ipv4:{text}:1")) == str(ip)
    assert str(ClientAddress(None, "peer", "unix:/run/x")) == "unix:/run/x"
