"""The enclave's connection slots cannot be held hostage: half frames time out, idle peers are
closed, and a full table makes room for a new connection instead of refusing it."""

from __future__ import annotations

import asyncio
import struct

import pytest

from swqos_core import config
from swqos_core.enclave.client import open_connection
from swqos_core.enclave.protocol import FrameType, encode, read_frame
from swqos_core.enclave.signer import run_enclave


@pytest.fixture
async def enclave(tmp_path):
    sock = tmp_path / "enclave.sock"
    cfg = config.parse({
        "swqos": {"plugins": ["payload_tls_cv"]},
        "enclave": {"listen": f"unix://{sock}", "max_connections": 4, "frame_timeout_ms": 200,
                    "idle_timeout_s": 2},
        "pipeline": {"payload_match": "tls_cv", "key_provider": "file"},
        "layers": {"key_provider": {"file": {"path": str(tmp_path / "id.json"), "create": True}}},
    }, process="enclave", path=tmp_path / "enclave.toml")
    ready = asyncio.Event()
    task = asyncio.create_task(run_enclave(cfg, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    yield f"unix://{sock}"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def ping(address: str, timeout: float = 5.0) -> FrameType:
    reader, writer = await asyncio.wait_for(open_connection(address), timeout)
    try:
        writer.write(encode(FrameType.PING, 7, 0, b""))
        await writer.drain()
        frame = await asyncio.wait_for(read_frame(reader, 4096), timeout)
        assert frame is not None
        return frame.type
    finally:
        writer.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except TimeoutError:
        return False


async def test_a_half_sent_frame_is_cut_off_after_the_frame_timeout(enclave):
    reader, writer = await open_connection(enclave)
    writer.write(struct.pack(">I", 64) + b"x" * 10)  # promises 64 bytes, sends 10, then waits
    await writer.drain()
    assert await closed_within(reader, 2.0)  # 200 ms frame timeout, generous margin
    writer.close()
    assert await ping(enclave) is FrameType.PONG


async def test_an_idle_connection_is_closed_after_the_idle_timeout(enclave):
    reader, writer = await open_connection(enclave)
    assert await closed_within(reader, 5.0)  # idle_timeout_s = 2
    writer.close()


async def test_a_new_connection_gets_in_while_idle_peers_hold_every_slot(enclave):
    held = [await open_connection(enclave) for _ in range(4)]  # max_connections = 4, all idle
    await asyncio.sleep(0.1)
    assert await ping(enclave, timeout=5.0) is FrameType.PONG  # the least recently active made room
    assert await closed_within(held[0][0], 2.0)  # the oldest idle one was the one closed
    for _, writer in held:
        writer.close()
