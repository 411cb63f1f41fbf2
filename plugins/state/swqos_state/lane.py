"""The request path's connection to Redis: one pipelined connection, commands answered in order.

Why not redis-py here: its asyncio client spends about 220 µs of CPU on a bare ``PING`` on the
benchmark machine (connection pool, condition variable, a timeout context and a stream reader per
command), against about 50 µs for the round trip itself, and a signature sends one command per
limiter stage. This lane keeps only what a round trip needs: ``hiredis`` (the parser redis-py
itself uses) packs each command and parses the replies, an asyncio Protocol carries them, and
because Redis answers one connection's commands in the order they were sent, replies are matched
to their callers first in, first out. One connection then serves every concurrent request, with
no pool and no lock. Everything off the request path (start, polls, policy writes, failures,
export) still goes through redis-py.

Bounds: at most ``max_pending`` commands in flight (beyond it a call fails at once, the caller
falls back and the refusal is counted); each command must be answered within ``timeout`` or the
connection is closed, failing everything it carried, and the next call reconnects (at most one
connect at a time, bounded by ``connect_timeout``). A reply for a caller that gave up (its
request's deadline passed) is read and dropped, so the order is never lost.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import hiredis


class LaneError(Exception):
    """The lane could not carry a command: not connected, timed out, too many in flight, or the
    server refused the handshake. Its message never holds the password."""


@dataclass(frozen=True, slots=True)
class LaneTarget:
    """Where and as whom the lane connects (the store's URL, parsed once)."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None = field(repr=False)  # never in a repr, a log line or a test's output
    ssl_context: ssl.SSLContext | None
    where: str  # the URL without its password, for messages

    @classmethod
    def from_url(cls, url: str, *, username: str | None, password: str | None,
                 ssl_context: ssl.SSLContext | None, where: str) -> LaneTarget:
        p = urllib.parse.urlsplit(url)
        db_text = p.path.strip("/") or "0"
        if not db_text.isdigit():
            raise ValueError(f"{where}: the database in the URL path must be a number")
        user = username if username is not None else (urllib.parse.unquote(p.username) if p.username else None)
        secret = password if password is not None else (urllib.parse.unquote(p.password) if p.password else None)
        return cls(p.hostname or "localhost", p.port or 6379, int(db_text), user, secret, ssl_context, where)


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the callers waiting for its replies, oldest first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        #: (future, the loop time by which its reply is due), in the order the commands were sent.
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.closed = False
        self._watchdog: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(LaneError(f"the server sent something that is not RESP ({exc})"))
                return
            if reply is False:  # RESP2 has no booleans: False only means "need more bytes"
                return
            if not self.waiting:
                self.abort(LaneError("the server sent a reply nobody asked for"))
                return
            future, _ = self.waiting.popleft()
            if not future.done():  # a caller whose deadline passed: its reply is dropped
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(LaneError(f"connection lost ({exc or 'closed by the server'})"))

    # --- the lane's side -----------------------------------------------------------------
    def send(self, packed: bytes) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        self.waiting.append((future, self.loop.time() + self.timeout))
        self.transport.write(packed)  # type: ignore[union-attr]
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(self.waiting[0][1], self._check)
        return future

    def _check(self) -> None:
        """One timer per connection, not one per command: it fires when the oldest command is due."""
        self._watchdog = None
        if not self.waiting or self.closed:
            return
        due = self.waiting[0][1]
        if self.loop.time() >= due:
            self.abort(LaneError(f"no reply within {self.timeout * 1000:.0f} ms"))
        else:
            self._watchdog = self.loop.call_at(due, self._check)

    def abort(self, error: LaneError) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._fail(error)

    def _fail(self, error: LaneError) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class RedisLane:
    """Pipelined commands over one connection, opened on first use and after any failure."""

    def __init__(self, target: LaneTarget, *, timeout: float, connect_timeout: float, max_pending: int) -> None:
        self.target = target
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_pending = max_pending
        self._conn: _Connection | None = None
        self._connect_lock = asyncio.Lock()
        #: Calls refused because ``max_pending`` commands were already in flight.
        self.busy_refusals = 0
        self.connects = 0

    async def call(self, *args: str | bytes | int) -> Any:
        """Send one command and return its reply (a ``hiredis.ReplyError`` is returned, not raised,
        so the caller decides what a Redis error means). Raises :class:`LaneError`."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connect()
        if len(conn.waiting) >= self.max_pending:
            self.busy_refusals += 1
            raise LaneError(f"{self.max_pending} commands already waiting for Redis")
        return await conn.send(hiredis.pack_command(args))

    async def _connect(self) -> _Connection:
        async with self._connect_lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn  # another caller connected while this one waited
            try:
                async with asyncio.timeout(self.connect_timeout):
                    self._conn = await self._open()
            except TimeoutError:
                raise LaneError(f"{self.target.where}: no connection within "
                                f"{self.connect_timeout * 1000:.0f} ms") from None
            except OSError as exc:
                raise LaneError(f"{self.target.where}: cannot connect ({exc.strerror or exc})") from None
            self.connects += 1
            return self._conn

    async def _open(self) -> _Connection:
        t = self.target
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Connection(loop, self.timeout), t.host, t.port,
                                               ssl=t.ssl_context, server_hostname=t.host if t.ssl_context else None)
        hello: list[asyncio.Future[Any]] = []
        if t.password is not None:
            auth = ("AUTH", t.username, t.password) if t.username else ("AUTH", t.password)
            hello.append(conn.send(hiredis.pack_command(auth)))
        if t.db:
            hello.append(conn.send(hiredis.pack_command(("SELECT", t.db))))
        try:
            for future in hello:
                reply = await future
                if isinstance(reply, hiredis.ReplyError):
                    # The server's words only (WRONGPASS, NOPERM ...): they never echo the password.
                    raise LaneError(f"{t.where}: the server refused the handshake: {str(reply).split(' ')[0]}")
        except BaseException:
            conn.abort(LaneError("handshake failed"))
            raise
        return conn

    def in_flight(self) -> int:
        return len(self._conn.waiting) if self._conn is not None and not self._conn.closed else 0

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.abort(LaneError("the store is closing"))
            self._conn = None
