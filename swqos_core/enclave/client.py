"""The host-proxy's connection to the enclave: one multiplexed connection, reconnected forever.

While the enclave is unreachable every call fails at once with UNAVAILABLE and health says
NOT_SERVING; when it comes back both recover by themselves.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Callable

from swqos_core.enclave.protocol import (
    HOST_MAX_FRAME,
    LENGTH,
    RESPONSES,
    ErrorCode,
    Frame,
    FrameType,
    ProtocolError,
    check_length,
    decode_error,
    decode_identity,
    encode,
    parse_address,
    parse_frame,
    read_frame,
)
from swqos_core.errors import Rejection, invalid_argument, resource_exhausted, unavailable
from swqos_core.state import EnclaveIdentity, ServiceState

log = logging.getLogger("swqos.enclave_client")


async def open_connection(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kind, where = parse_address(address)
    if kind == "unix":
        return await asyncio.open_unix_connection(str(where))
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)  # type: ignore[attr-defined]
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, where)
    return await asyncio.open_connection(sock=sock)


async def connect(address: str, protocol_factory: Callable[[], asyncio.Protocol]) -> asyncio.Transport:
    """A transport to the enclave (``unix:`` path or ``vsock:`` CID and port) driving a Protocol."""
    kind, where = parse_address(address)
    loop = asyncio.get_running_loop()
    if kind == "unix":
        transport, _ = await loop.create_unix_connection(protocol_factory, str(where))
        return transport
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)  # type: ignore[attr-defined]
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, where)
        transport, _ = await loop.create_connection(protocol_factory, sock=sock)
    except BaseException:
        sock.close()
        raise
    return transport


class _Answers(asyncio.Protocol):
    """The host's end of the enclave connection: each answer goes to its waiting call as soon as
    the read that carried it is parsed (no reader task, no per-frame wake-up; a read holding many
    answers is one callback)."""

    def __init__(self, pending: dict[int, asyncio.Future[Frame]],
                 on_lost: Callable[[asyncio.BaseTransport], None]) -> None:
        self.pending = pending
        self.on_lost = on_lost
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        try:
            while len(buf) >= LENGTH.size:
                (length,) = LENGTH.unpack_from(buf)
                check_length(length, HOST_MAX_FRAME)
                end = LENGTH.size + length
                if len(buf) < end:
                    return
                frame = parse_frame(bytes(buf[LENGTH.size:end]))
                del buf[:end]
                if frame.type not in RESPONSES:
                    raise ProtocolError(f"{frame.type.name} from the enclave is not a response")
                future = self.pending.get(frame.request_id)
                if future is not None and not future.done():
                    future.set_result(frame)
        except ProtocolError as exc:
            log.error("enclave protocol error: %s", exc)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.on_lost(self.transport)
        if not self.lost.done():
            self.lost.set_result(None)


class EnclaveClient:
    def __init__(
        self,
        address: str,
        state: ServiceState,
        *,
        max_inflight: int = 64,
        ping_interval: float = 1.0,
        connect_timeout: float = 1.0,
    ) -> None:
        self.address = address
        self.state = state
        self.max_inflight = max_inflight
        self.ping_interval = ping_interval
        self.connect_timeout = connect_timeout
        self._writer: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        #: Frames queued this loop turn (bounded by max_inflight plus pings).
        self._outbox: list[bytes] = []
        self.round_trips = 0
        self.round_trip_seconds = 0.0
        self.busy_refusals = 0
        #: The enclave's own signature counter, from its last IDENTITY_RESULT or PONG (metrics, admin status).
        self.enclave_signatures: int | None = None

    @property
    def inflight(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="enclave-connection")

    async def close(self) -> None:
        # Cancel until done: a cancel that lands in a suppressed await (the reader's clean-up) is lost.
        while self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=0.5)
        self._drop("proxy shutting down")

    # --- calls ---------------------------------------------------------------------------
    async def sign(self, payload: bytes, trace_id: int) -> bytes:
        frame = await self._call(FrameType.SIGN, payload, trace_id)
        if frame.type is not FrameType.SIGNATURE or len(frame.data) != 64:
            raise unavailable("enclave gave a malformed answer", label="enclave_protocol")
        return frame.data

    async def identity(self, nonce: bytes, trace_id: int = 0) -> tuple[bytes, int, str | None, bytes]:
        frame = await self._call(FrameType.IDENTITY, nonce, trace_id)
        if frame.type is not FrameType.IDENTITY_RESULT:
            raise unavailable("enclave gave a malformed answer", label="enclave_protocol")
        try:
            return decode_identity(frame.data)
        except ProtocolError:
            raise unavailable("enclave gave a malformed answer", label="enclave_protocol") from None

    async def _call(self, ftype: FrameType, data: bytes, trace_id: int, *, bounded: bool = True) -> Frame:
        writer = self._writer
        if writer is None:
            raise unavailable("enclave unreachable", label="enclave_unreachable")
        if bounded and len(self._pending) >= self.max_inflight:
            # Refuse now rather than queue past the caller's deadline (back-pressure, T3).
            self.busy_refusals += 1
            raise resource_exhausted("enclave queue full", retry_after=0.05, label="enclave_queue_full")
        request_id = next(self._ids) & 0xFFFFFFFF
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        started = time.perf_counter()
        try:
            self._send(encode(ftype, request_id, trace_id, data))
            frame = await future  # the caller's deadline (asyncio.timeout) bounds this wait
        except (ConnectionError, OSError):
            raise unavailable("enclave connection lost", label="enclave_unreachable") from None
        finally:
            self._pending.pop(request_id, None)
        self.round_trips += 1
        self.round_trip_seconds += time.perf_counter() - started
        if frame.type is FrameType.ERROR:
            code, reason = decode_error(frame.data)
            if code is ErrorCode.REFUSED:
                raise invalid_argument(reason, label="payload_refused")
            if code is ErrorCode.BUSY:
                raise resource_exhausted("enclave busy", retry_after=0.05, label="enclave_busy")
            raise unavailable("enclave could not complete the request", label="enclave_fault")
        return frame

    def _send(self, frame: bytes) -> None:
        """Queue a frame; every frame queued in one loop turn leaves in one write (one syscall).
        A frame alone in flight leaves at once: there is no batch to wait for, and waiting for the
        loop's next turn would cost that turn (about 20,000 instructions) and its latency."""
        writer = self._writer
        if not self._outbox and len(self._pending) <= 1 and writer is not None and not writer.is_closing():
            writer.write(frame)
            return
        self._outbox.append(frame)
        if len(self._outbox) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        frames, self._outbox = self._outbox, []
        writer = self._writer
        if frames and writer is not None and not writer.is_closing():
            writer.write(b"".join(frames))

    # --- connection ----------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow close()'s cancel when the
                # awaited call completes in the same loop turn (gh-86296), and close() then waits forever.
                answers = _Answers(self._pending, self._connection_lost)
                async with asyncio.timeout(self.connect_timeout):
                    transport = await connect(self.address, lambda a=answers: a)
            except (OSError, TimeoutError, ValueError) as exc:
                if self.state.enclave_connected or backoff == 0.05:
                    log.warning("enclave %s unreachable: %s", self.address, exc)
                self.state.set_enclave(False)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            try:
                async with asyncio.timeout(2.0):
                    public_key, signatures, measurement = await self._hello(transport, answers)
                # Only now do calls use this connection: an enclave that accepts but never answers
                # (one shutting down) must not hold a trader's call until its deadline.
                self._writer = transport
                self.state.set_enclave(True, EnclaveIdentity(public_key, measurement, signatures))
                self.enclave_signatures = signatures
                log.info("connected to enclave %s", self.address)
                while not answers.lost.done():
                    await asyncio.wait({answers.lost}, timeout=self.ping_interval)
                    if answers.lost.done():
                        break
                    # Health pings bypass the in-flight bound: a full queue is back-pressure, not a dead enclave.
                    async with asyncio.timeout(max(self.ping_interval, 0.5)):
                        pong = await self._call(FrameType.PING, b"", 0, bounded=False)
                    if pong.type is FrameType.PONG and len(pong.data) == 8:
                        self.enclave_signatures = int.from_bytes(pong.data, "big")
            except (Rejection, TimeoutError, ProtocolError) as exc:
                log.warning("enclave connection unhealthy: %s", exc or type(exc).__name__)
            finally:
                self._drop("enclave connection lost")
                transport.close()
            self.state.set_enclave(False)

    async def _hello(self, transport: asyncio.Transport, answers: _Answers) -> tuple[bytes, int, str | None]:
        """The enclave's identity, asked on a new connection before any call may use it."""
        request_id = next(self._ids) & 0xFFFFFFFF
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            transport.write(encode(FrameType.IDENTITY, request_id, 0, b""))
            await asyncio.wait({future, answers.lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._pending.pop(request_id, None)
        if not future.done():
            raise ProtocolError("the enclave closed the connection before saying who it is")
        frame = future.result()
        if frame.type is not FrameType.IDENTITY_RESULT:
            raise ProtocolError(f"{frame.type.name} instead of the enclave's identity")
        public_key, signatures, measurement, _ = decode_identity(frame.data)
        return public_key, signatures, measurement

    def _connection_lost(self, transport: asyncio.BaseTransport) -> None:
        """The connection in use closed: fail its calls now (UNAVAILABLE), not at their deadlines."""
        if self._writer is not None and self._writer is transport:
            self._drop("enclave connection lost")
            self.state.set_enclave(False)

    def _drop(self, reason: str) -> None:
        self._writer = None
        self._outbox = []
        for future in self._pending.values():
            if not future.done():
                future.set_exception(unavailable(reason, label="enclave_unreachable"))
        self._pending.clear()


async def query_identity(address: str, nonce: bytes = b"", timeout: float = 2.0) -> EnclaveIdentity:
    """One-shot identity query on a fresh connection (tests, status, the dev stack)."""
    reader, writer = await asyncio.wait_for(open_connection(address), timeout)
    try:
        writer.write(encode(FrameType.IDENTITY, 1, 0, nonce))
        frame = await asyncio.wait_for(read_frame(reader, HOST_MAX_FRAME), timeout)
        if frame is None or frame.type is not FrameType.IDENTITY_RESULT:
            raise ProtocolError("no identity result")
        public_key, signatures, measurement, _ = decode_identity(frame.data)
        return EnclaveIdentity(public_key, measurement, signatures)
    finally:
        writer.close()


__all__ = ["EnclaveClient", "open_connection", "query_identity"]
