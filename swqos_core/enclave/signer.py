"""The enclave signer process: holds the identity key, signs only what the matcher accepts.

Its configuration comes only from its own file (baked into the enclave image in production,
so it is measured into PCR0/PCR2). Nothing received on the socket changes what it will sign.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import socket
import stat

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from swqos_core.config import AppConfig
from swqos_core.enclave.protocol import (
    MAX_NONCE,
    REQUESTS,
    ErrorCode,
    FrameType,
    ProtocolError,
    encode,
    encode_error,
    encode_identity,
    parse_address,
    read_frame,
)
from swqos_core.errors import ConfigError, Rejection
from swqos_core.identity import from_base58, to_base58
from swqos_core.layers import KeyProvider, PayloadMatcher, Signer
from swqos_core.plugins import App, build_app

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
        #: Open connections → last time a frame arrived (the least recently active is closed first).
        self._active: dict[asyncio.StreamWriter, float] = {}
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
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        if len(self._active) >= self.max_connections:
            # Full: close the least recently active connection rather than refuse this one, so
            # idle connections from any local process cannot keep a restarted host-proxy out.
            victim = min(self._active, key=self._active.__getitem__)
            log.warning("connection cap %d reached: closing the least recently active connection",
                        self.max_connections)
            self.evicted += 1
            self._active.pop(victim, None)
            victim.close()
        self._active[writer] = loop.time()
        inflight: set[asyncio.Task[None]] = set()
        try:
            while writer in self._active:
                frame = await read_frame(reader, self.max_frame, frame_timeout=self.frame_timeout,
                                         idle_timeout=self.idle_timeout)
                if frame is None:
                    break
                if writer in self._active:
                    self._active[writer] = loop.time()
                if frame.type not in REQUESTS:
                    raise ProtocolError(f"{frame.type.name} is not a request")
                rid, tid = frame.request_id, frame.trace_id
                if frame.type is FrameType.SIGN:
                    result = self.sign(frame.data, tid)
                    if isinstance(result[0], FrameType):
                        writer.write(encode(FrameType.SIGNATURE, rid, tid, result[1]))  # type: ignore[arg-type]
                    else:
                        writer.write(encode_error(rid, tid, result[0], result[1]))  # type: ignore[arg-type]
                elif frame.type is FrameType.PING:
                    writer.write(encode(FrameType.PONG, rid, tid, self.signatures.to_bytes(8, "big")))
                elif len(frame.data) > MAX_NONCE:
                    writer.write(encode_error(rid, tid, ErrorCode.REFUSED, f"nonce longer than {MAX_NONCE} bytes"))
                elif len(inflight) >= self.max_inflight:
                    writer.write(encode_error(rid, tid, ErrorCode.BUSY, "enclave busy"))
                else:
                    # Attestation may block on /dev/nsm: keep it off the loop, answer out of order.
                    task = asyncio.create_task(self._identity(writer, rid, tid, frame.data))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                await writer.drain()
        except ProtocolError as exc:
            log.warning("closing connection: %s", exc)
        except (ConnectionError, OSError) as exc:
            log.info("connection lost: %s", exc)
        finally:
            self._active.pop(writer, None)
            for task in inflight:
                task.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _identity(self, writer: asyncio.StreamWriter, rid: int, tid: int, nonce: bytes) -> None:
        try:
            data = await asyncio.to_thread(self.identity, nonce)
            writer.write(encode(FrameType.IDENTITY_RESULT, rid, tid, data))
        except Exception:
            log.exception("attestation failed [trace %016x]", tid, extra={"request_id": f"{tid:016x}"})
            writer.write(encode_error(rid, tid, ErrorCode.FAULT, "attestation failed"))
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()


async def open_listener(address: str, handler) -> asyncio.Server:
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
            return await asyncio.start_unix_server(handler, path=path)
        finally:
            os.umask(old)
    cid, port = where  # type: ignore[misc]
    if not hasattr(socket, "AF_VSOCK"):
        raise ConfigError("AF_VSOCK is not available on this system (vsock listeners run inside a Nitro enclave)")
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    sock.bind((cid if cid >= 0 else socket.VMADDR_CID_ANY, port))
    return await asyncio.start_server(handler, sock=sock)


async def run_enclave(cfg: AppConfig, *, ready: asyncio.Event | None = None) -> None:
    """Build, unseal and serve until cancelled."""
    app = build_app(cfg)
    enclave = EnclaveSigner(app)
    enclave.unseal()
    for result in app.pm.hook.swqos_startup(app=app):
        if asyncio.iscoroutine(result):
            await result
    server = await open_listener(cfg.settings.listen, enclave.handle)
    log.info("enclave listening on %s", cfg.settings.listen)
    if ready is not None:
        ready.set()
    try:
        async with server:
            await server.serve_forever()
    finally:
        for result in app.pm.hook.swqos_shutdown(app=app):
            if asyncio.iscoroutine(result):
                with contextlib.suppress(Exception):
                    await result
