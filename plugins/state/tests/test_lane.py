"""The request path's pipelined Redis connection (swqos_state.lane), against a real redis-server and
against servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib

import hiredis
import pytest

from swqos_state.lane import LaneError, LaneTarget, RedisLane
from swqos_state.testing import PASSWORD, USER


def lane_for(server, *, password: str | None = PASSWORD, timeout: float = 1.0, max_pending: int = 4096,
             port: int | None = None) -> RedisLane:
    target = LaneTarget("127.0.0.1", port or server.port, 0, USER, password, None, "redis://127.0.0.1/0")
    return RedisLane(target, timeout=timeout, connect_timeout=1.0, max_pending=max_pending)


async def test_concurrent_calls_share_one_connection_and_each_gets_its_own_reply(redis_server):
    lane = lane_for(redis_server)
    try:
        await asyncio.gather(*(lane.call("SET", f"swqos:lane:{i}", f"v{i}") for i in range(300)))
        got = await asyncio.gather(*(lane.call("GET", f"swqos:lane:{i}") for i in range(300)))
        assert got == [f"v{i}".encode() for i in range(300)]
        assert lane.connects == 1
    finally:
        await lane.close()


async def test_a_caller_that_gives_up_does_not_shift_the_replies_of_the_others(redis_server):
    lane = lane_for(redis_server)
    try:
        await lane.call("SET", "swqos:lane:a", "A")
        await lane.call("SET", "swqos:lane:b", "B")
        first = asyncio.ensure_future(lane.call("GET", "swqos:lane:a"))
        second = asyncio.ensure_future(lane.call("GET", "swqos:lane:b"))
        await asyncio.sleep(0)  # both are sent
        first.cancel()
        assert await second == b"B"
        assert await lane.call("GET", "swqos:lane:a") == b"A"
    finally:
        await lane.close()


async def test_a_redis_error_is_returned_not_raised(redis_server):
    lane = lane_for(redis_server)
    try:
        reply = await lane.call("EVALSHA", "0" * 40, 0)
        assert isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")
        assert await lane.call("PING") == b"PONG"  # the connection is still in step
    finally:
        await lane.close()


async def test_a_wrong_password_is_a_lane_error_without_the_password(redis_server):
    lane = lane_for(redis_server, password="not-the-password")
    with pytest.raises(LaneError) as ei:
        await lane.call("PING")
    assert "WRONGPASS" in str(ei.value) and "not-the-password" not in str(ei.value)
    assert PASSWORD not in str(ei.value)


async def test_no_server_is_a_lane_error(redis_server):
    from swqos_state.testing import free_port

    lane = lane_for(redis_server, port=free_port())
    with pytest.raises(LaneError, match="cannot connect"):
        await lane.call("PING")


@contextlib.asynccontextmanager
async def silent_server():
    """Accepts, reads, never answers: a hung Redis."""
    peers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], peers
    finally:
        for w in peers:
            w.close()
        server.close()
        await server.wait_closed()


async def test_no_reply_within_the_timeout_closes_the_connection_and_fails_every_waiting_call():
    async with silent_server() as (port, _peers):
        lane = RedisLane(LaneTarget("127.0.0.1", port, 0, None, None, None, "redis://127.0.0.1/0"),
                         timeout=0.05, connect_timeout=1.0, max_pending=100)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        results = await asyncio.gather(*(lane.call("PING") for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, LaneError) and "no reply within 50 ms" in str(r) for r in results)
        assert loop.time() - t0 < 1.0
        assert lane.in_flight() == 0
        with pytest.raises(LaneError):
            await lane.call("PING")  # a fresh connection, and it times out again
        assert lane.connects == 2


async def test_commands_in_flight_are_bounded():
    async with silent_server() as (port, _):
        lane = RedisLane(LaneTarget("127.0.0.1", port, 0, None, None, None, "redis://127.0.0.1/0"),
                         timeout=0.2, connect_timeout=1.0, max_pending=3)
        waiting = [asyncio.ensure_future(lane.call("PING")) for _ in range(3)]
        await asyncio.sleep(0.01)
        with pytest.raises(LaneError, match="3 commands already waiting"):
            await lane.call("PING")
        assert lane.busy_refusals == 1 and lane.in_flight() == 3
        await asyncio.gather(*waiting, return_exceptions=True)
        await lane.close()


async def test_a_server_that_speaks_something_else_is_dropped():
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        await reader.read(100)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        lane = RedisLane(LaneTarget("127.0.0.1", port, 0, None, None, None, "redis://127.0.0.1/0"),
                         timeout=1.0, connect_timeout=1.0, max_pending=10)
        with pytest.raises(LaneError, match="not RESP"):
            await lane.call("PING")
        await lane.close()
    finally:
        server.close()


def test_the_url_gives_host_port_database_and_credentials():
    t = LaneTarget.from_url("rediss://ops:s%40cret@10.0.0.5:6380/2", username=None, password=None, ssl_context=None,
                            where="rediss://ops:***@10.0.0.5:6380/2")
    assert (t.host, t.port, t.db, t.username, t.password) == ("10.0.0.5", 6380, 2, "ops", "s@cret")
    t = LaneTarget.from_url("redis://[::1]/0", username="u", password="p", ssl_context=None, where="x")
    assert (t.host, t.port, t.db, t.username, t.password) == ("::1", 6379, 0, "u", "p")
    with pytest.raises(ValueError, match="must be a number"):
        LaneTarget.from_url("redis://h/zero", username=None, password=None, ssl_context=None, where="redis://h/zero")


@pytest.mark.parametrize("answer", [b":7\r\n", b"*2\r\n:9\r\n$1\r\n0\r\n", b"*1\r\n:0\r\n", b"$-1\r\n"])
async def test_a_take_answer_that_is_not_the_scripts_is_a_store_failure(answer):
    """Fail closed on a server that answers the take with something else: StoreUnavailable (the
    limiter then uses its per-replica share), never an admission and never a crash."""
    from swqos_core.store import Cell, StoreUnavailable
    from swqos_state.redis_store import RedisSettings, RedisStateStore

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            writer.write(answer)
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStateStore(RedisSettings(url=f"redis://127.0.0.1:{port}/0", allow_unauthenticated=True),
                            password=None, tls=None)
    try:
        with pytest.raises(StoreUnavailable, match="take script"):
            await store.take([Cell("rl:x", 10**9, 0, "x")])
    finally:
        await store._lane.close()
        server.close()
