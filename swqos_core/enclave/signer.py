"""The enclave signer process: holds the identity key, signs only what the matcher accepts.

Its configuration comes only from its own file (baked into the enclave image in production,
so it is measured into PCR0/PCR2). Nothing received on the socket changes what it will sign.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
import stat
from collections.abc import Callable

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from swqos_core.config import AppConfig
from swqos_core.enclave.protocol import (
    LENGTH,
    MAX_NONCE,
    REQUESTS,
    ErrorCode,
    Frame,
    FrameType,
    ProtocolError,
    check_length,
    encode,
    encode_error,
    encode_identity,
    parse_address,
    parse_frame,
)
from swqos_core.errors import ConfigError, Rejection
from swqos_core.identity import from_base58, to_base58
from swqos_core.layers import KeyProvider, PayloadMatcher, Signer
from swqos_core.plugins import App, build_app, shutdown_plugins

log = logging.getLogger("swqos.enclave")

#: A CertificateVerify used once at boot to prove the signer produces signatures the public key verifies.
_SELF_TEST = b"\x20" * 64 + b"TLS 1.3, client CertificateVerify\x00" + bytes(32)


class EnclaveSigner:
    """Payload match → sign, behind the frame protocol. One instance per enclave process."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.config.settings
        self.max_frame = settings.max_frame_bytes
        self.max_inflight = settings.max_inflight
        self.max_connections = settings.max_connections
        self.frame_timeout = settings.frame_timeout_ms / 1000
        self.idle_timeout = settings.idle_timeout_s
        #: Open connections (the least recently active is closed first when all slots are taken).
        self._open: set[EnclaveConnection] = set()
        self.evicted = 0
        self.matcher: PayloadMatcher = app.one("payload_match")
        self.key_provider: KeyProvider = app.one("key_provider")
        self.signer: Signer = app.one("signer")
        self.public_key = b""
        self.signatures = 0  # counted here, where the host cannot reset it
        self._measurement: str | None = None

    # --- boot ----------------------------------------------------------------------------
    def unseal(self) -> None:
        """Load the key, check it is the expected identity, prove the signer works. Raises ConfigError."""
        material = self.key_provider.load()
        try:
            self.public_key = self.signer.load(material)
        finally:
            material.seed[:] = bytes(len(material.seed))  # best effort: the seed leaves no copy we own
        expected = self.app.config.settings.expected_public_key
        if expected is not None:
            try:
                want = from_base58(expected)
            except ValueError as exc:
                raise ConfigError(f"[enclave] expected_public_key: {exc}") from None
            if not hmac.compare_digest(want, self.public_key):
                raise ConfigError(
                    f"the loaded identity key is {to_base58(self.public_key)}, not the expected "
                    f"{expected}: refusing to start ({material.origin})"
                )
        try:
            VerifyKey(self.public_key).verify(_SELF_TEST, self.signer.sign(_SELF_TEST))
        except BadSignatureError:
            raise ConfigError("signer self-test failed: its signatures do not verify with its public key") from None
        self._measurement = self.key_provider.measurement()
        log.info("identity %s loaded from %s", to_base58(self.public_key), material.origin)

    # --- requests ------------------------------------------------------------------------
    def sign(self, payload: bytes, trace_id: int) -> tuple[FrameType, bytes] | tuple[ErrorCode, str]:
        try:
            self.matcher.match(payload)
        except Rejection as exc:
            log.info("refused payload (%d bytes): %s [trace %016x]", len(payload), exc.reason, trace_id,
                     extra={"request_id": f"{trace_id:016x}"})
            return ErrorCode.REFUSED, exc.reason
        except Exception:  # a matcher fault is a refusal, never a pass
            log.exception("payload matcher failed [trace %016x]", trace_id, extra={"request_id": f"{trace_id:016x}"})
            return ErrorCode.REFUSED, "payload check failed"
        signature = self.signer.sign(payload)
        self.signatures += 1
        return FrameType.SIGNATURE, signature

    def identity(self, nonce: bytes) -> bytes:
        document = self.key_provider.attest(self.public_key, nonce)
        return encode_identity(self.public_key, self.signatures, self._measurement, document)

    # --- connections ---------------------------------------------------------------------
    def connection(self) -> EnclaveConnection:
        """A protocol for one new connection; makes room first when every slot is taken."""
        if len(self._open) >= self.max_connections:
            # Full: close the least recently active connection rather than refuse this one, so
            # idle connections from any local process cannot keep a restarted host-proxy out.
            victim = min(self._open, key=lambda c: c.last_active)
            log.warning("connection cap %d reached: closing the least recently active connection",
                        self.max_connections)
            self.evicted += 1
            victim.close("evicted: connection cap reached")
        return EnclaveConnection(self)

    def answer(self, frame: Frame, conn: EnclaveConnection) -> bytes | None:
        """The reply to one request frame, or None when it is answered later (attestation)."""
        if frame.type not in REQUESTS:
            raise ProtocolError(f"{frame.type.name} is not a request")
        rid, tid = frame.request_id, frame.trace_id
        if frame.type is FrameType.SIGN:
            kind, value = self.sign(frame.data, tid)
            if kind is FrameType.SIGNATURE:
                return encode(FrameType.SIGNATURE, rid, tid, value)  # type: ignore[arg-type]
            return encode_error(rid, tid, kind, value)  # type: ignore[arg-type]
        if frame.type is FrameType.PING:
            return encode(FrameType.PONG, rid, tid, self.signatures.to_bytes(8, "big"))
        if len(frame.data) > MAX_NONCE:
            return encode_error(rid, tid, ErrorCode.REFUSED, f"nonce longer than {MAX_NONCE} bytes")
        if len(conn.inflight) >= self.max_inflight:
            return encode_error(rid, tid, ErrorCode.BUSY, "enclave busy")
        # Attestation may block on /dev/nsm: keep it off the loop, answer out of order.
        task = asyncio.get_running_loop().create_task(self._identity(conn, rid, tid, frame.data))
        conn.inflight.add(task)
        task.add_done_callback(conn.inflight.discard)
        return None

    async def _identity(self, conn: EnclaveConnection, rid: int, tid: int, nonce: bytes) -> None:
        try:
            data = await asyncio.to_thread(self.identity, nonce)
            conn.send(encode(FrameType.IDENTITY_RESULT, rid, tid, data))
        except Exception:
            log.exception("attestation failed [trace %016x]", tid, extra={"request_id": f"{tid:016x}"})
            conn.send(encode_error(rid, tid, ErrorCode.FAULT, "attestation failed"))


class EnclaveConnection(asyncio.Protocol):
    """One connection to the enclave, as an asyncio Protocol.

    Every frame that arrives in one read is answered, and all the answers leave in one write
    (one syscall per batch, not per signature). A frame's bytes must all arrive within
    ``frame_timeout`` of its first; a connection with no frame for ``idle_timeout`` is closed;
    garbage closes this connection only. When the peer stops reading, reading stops too, so the
    write buffer is bounded by what one read can ask for.
    """

    def __init__(self, enclave: EnclaveSigner) -> None:
        self.enclave = enclave
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.inflight: set[asyncio.Task[None]] = set()
        self.last_active = self.loop.time()
        self._partial_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.enclave._open.add(self)
        self._idle_timer = self.loop.call_later(self.enclave.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        self.buffer += data
        replies: list[bytes] = []
        completed = False
        try:
            while len(self.buffer) >= LENGTH.size:
                (length,) = LENGTH.unpack_from(self.buffer)
                check_length(length, self.enclave.max_frame)
                end = LENGTH.size + length
                if len(self.buffer) < end:
                    break
                frame = parse_frame(bytes(self.buffer[LENGTH.size:end]))
                del self.buffer[:end]
                completed = True
                reply = self.enclave.answer(frame, self)
                if reply is not None:
                    replies.append(reply)
        except ProtocolError as exc:
            self.send(b"".join(replies))
            self.close(str(exc))
            return
        self.send(b"".join(replies))
        if not self.buffer:
            self._cancel_partial()
        elif completed or self._partial_timer is None:  # a new frame started: its clock starts now
            self._cancel_partial()
            self._partial_timer = self.loop.call_later(self.enclave.frame_timeout, self.close,
                                                       f"frame not complete within {self.enclave.frame_timeout:g}s")

    def send(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self, reason: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            log.warning("closing connection: %s", reason)
            self.transport.close()
        self.enclave._open.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.info("connection lost: %s", exc)
        self.enclave._open.discard(self)
        self._cancel_partial()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for task in self.inflight:
            task.cancel()

    def _cancel_partial(self) -> None:
        if self._partial_timer is not None:
            self._partial_timer.cancel()
            self._partial_timer = None

    def _check_idle(self) -> None:
        idle_for = self.loop.time() - self.last_active
        if idle_for >= self.enclave.idle_timeout:
            self.close(f"idle for more than {self.enclave.idle_timeout:g}s")
        else:
            self._idle_timer = self.loop.call_later(self.enclave.idle_timeout - idle_for, self._check_idle)


async def open_listener(address: str, protocol_factory: Callable[[], asyncio.Protocol]) -> asyncio.Server:
    kind, where = parse_address(address)
    if kind == "unix":
        path = str(where)
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise ConfigError(f"{path} exists and is not a socket")
            os.unlink(path)  # a stale socket from a previous run
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = os.umask(0o177)  # socket file 0600: only this user's host-proxy may connect
        try:
            return await asyncio.get_running_loop().create_unix_server(protocol_factory, path=path)
        finally:
            os.umask(old)
    cid, port = where  # type: ignore[misc]
    if not hasattr(socket, "AF_VSOCK"):
        raise ConfigError("AF_VSOCK is not available on this system (vsock listeners run inside a Nitro enclave)")
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    sock.bind((cid if cid >= 0 else socket.VMADDR_CID_ANY, port))
    return await asyncio.get_running_loop().create_server(protocol_factory, sock=sock)


async def run_enclave(cfg: AppConfig, *, ready: asyncio.Event | None = None) -> None:
    """Build, unseal and serve until cancelled."""
    app = build_app(cfg)
    enclave = EnclaveSigner(app)
    enclave.unseal()
    for result in app.pm.hook.swqos_startup(app=app):
        if asyncio.iscoroutine(result):
            await result
    server = await open_listener(cfg.settings.listen, enclave.connection)
    log.info("enclave listening on %s", cfg.settings.listen)
    if ready is not None:
        ready.set()
    try:
        async with server:
            await server.serve_forever()
    finally:
        await shutdown_plugins(app)
