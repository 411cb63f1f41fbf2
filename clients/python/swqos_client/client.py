"""Sync and async clients for the swqos Signer API (``proto/swqos/v1/signer.proto``).

Both clients share one shape: a TLS channel to the proxy, a bearer token (fixed or refreshed through
a callback), a per-call deadline that bounds the whole call including retries, and typed exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import base58
import grpc

from swqos_proto import IDENTITY_METHOD, SIGN_METHOD, signer_pb2

from .errors import (
    BadResponse,
    DeadlineExceeded,
    LocalRefusal,
    ProxyUnreachable,
    SwqosError,
    error_from_status,
)
from .payload import check_client_certificate_verify
from .retry import RetryPolicy
from .tokens import TokenCallback, TokenSource, as_token_source

Metadata = Sequence[tuple[str, str]]

DEFAULT_TIMEOUT = 1.0  # seconds; a QUIC handshake times out after 2 s on current Agave leaders
#: Seconds a client's first call may wait for its channel's first connection (TCP, TLS, HTTP/2),
#: on top of the call's own ``timeout``. A cold channel pays the handshakes once; a proxy that
#: is still starting is retried meanwhile instead of failing the first call.
DEFAULT_CONNECT_TIMEOUT = 5.0
MAX_NONCE = 64
#: grpc's reconnect backoff starts at 1 s: one refused first attempt (a proxy still starting)
#: would then outlast a 1 s call. These start lower; ``channel_options`` can override them.
_RECONNECT_OPTIONS: list[tuple[str, object]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
#: The standard gRPC health check every proxy serves (no credential, never reaches the enclave):
#: what ``keep_warm`` sends on an idle channel.
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
#: Bounds of ``keep_warm`` (seconds): more often than every 10 ms is load, not warmth; less often
#: than every 60 s no longer keeps anything warm.
KEEP_WARM_RANGE = (0.01, 60.0)


@dataclass(frozen=True)
class TlsTrust:
    """Which server certificates the client accepts.

    ``ca_pem`` None means the system roots (grpc's bundled roots, or ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``).
    ``server_name`` overrides the name checked against the certificate (for connecting by IP to a
    server whose certificate names a host).
    """

    ca_pem: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_ca_file(cls, path: str | Path, *, server_name: str | None = None) -> TlsTrust:
        return cls(ca_pem=Path(path).read_bytes(), server_name=server_name)

    @classmethod
    def system(cls, *, server_name: str | None = None) -> TlsTrust:
        return cls(ca_pem=None, server_name=server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca_pem)

    def options(self) -> list[tuple[str, object]]:
        opts: list[tuple[str, object]] = []
        if self.server_name:
            opts.append(("grpc.ssl_target_name_override", self.server_name))
            opts.append(("grpc.default_authority", self.server_name))
        return opts


@dataclass(frozen=True)
class Identity:
    public_key: bytes
    attestation_document: bytes = b""

    @property
    def public_key_base58(self) -> str:
        return base58.b58encode(self.public_key).decode("ascii")


@dataclass
class _Common:
    target: str
    tokens: TokenSource
    trust: TlsTrust
    timeout: float
    retry: RetryPolicy
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT
    channel_options: list[tuple[str, object]] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def options(self) -> list[tuple[str, object]]:
        # Requests and replies are tiny; a small cap bounds what a misbehaving server can make us buffer.
        return [
            ("grpc.max_receive_message_length", 64 * 1024),
            *_RECONNECT_OPTIONS,
            *self.trust.options(),
            *self.channel_options,
        ]

    def metadata(self, token: str, extra: Metadata) -> list[tuple[str, str]]:
        md = [("authorization", f"Bearer {token}")]
        md.extend((k, v) for k, v in extra if k.lower() != "authorization")
        return md

    def total(self, timeout: float | None) -> float:
        t = self.timeout if timeout is None else float(timeout)
        if t <= 0:
            raise LocalRefusal("timeout must be positive")
        return t

    def not_ready_error(self, waited: float) -> ProxyUnreachable:
        return ProxyUnreachable(
            f"no connection to swqos proxy at {self.target} within {waited:.3f} s (TCP, TLS or the proxy is down)",
            code=grpc.StatusCode.UNAVAILABLE,
        )

    def deadline_error(self, budget: float, attempts: int, last: SwqosError | None) -> SwqosError:
        if last is not None and not isinstance(last, DeadlineExceeded):
            last.attempts = attempts
            return last
        return DeadlineExceeded(
            f"no answer from swqos proxy at {self.target} within the {budget:.3f} s deadline",
            code=grpc.StatusCode.DEADLINE_EXCEEDED,
            attempts=attempts,
        )


def _sign_request(payload: bytes) -> signer_pb2.SignCertificateVerifyRequest:
    return signer_pb2.SignCertificateVerifyRequest(payload=payload)


def _check_signature(resp: signer_pb2.SignCertificateVerifyResponse) -> bytes:
    sig = bytes(resp.signature)
    if len(sig) != 64:
        raise BadResponse(f"signer returned {len(sig)} signature bytes, expected 64")
    return sig


def _check_identity(resp: signer_pb2.GetIdentityResponse) -> Identity:
    pk = bytes(resp.public_key)
    if len(pk) != 32:
        raise BadResponse(f"signer returned a {len(pk)}-byte public key, expected 32")
    return Identity(public_key=pk, attestation_document=bytes(resp.attestation_document))


def _check_nonce(nonce: bytes) -> bytes:
    nonce = bytes(nonce)
    if len(nonce) > MAX_NONCE:
        raise LocalRefusal(f"nonce longer than {MAX_NONCE} bytes")
    return nonce


class _ClientBase:
    """What the blocking and the asyncio clients share: settings, the channel and its two methods.

    A new client has a cold channel: no connection until the first call. That first call (or an
    explicit ``wait_ready()``) first waits up to ``connect_timeout`` for the connection, then runs
    under its own ``timeout``. If the connection is still not up by then, the call goes ahead
    anyway and fails with the transport's own reason (``ProxyUnreachable``). ``connect_timeout=None``
    skips the wait: the first call's ``timeout`` then covers the handshakes too.

    ``keep_warm=S`` keeps the channel warm once it has been used (or ``wait_ready()`` connected
    it): after ``S`` seconds without a call, it sends the standard gRPC health check (one tiny
    unauthenticated RPC the proxy answers itself), so a sign call after a quiet spell, like the one
    inside a QUIC handshake, does not pay for an idle connection. ``None`` (default): never.
    """

    _secure_channel: Callable[..., Any]

    def __init__(
        self,
        target: str,
        *,
        token: str | TokenSource | None = None,
        token_refresh: TokenCallback | None = None,
        refresh_margin: float = 60.0,
        trust: TlsTrust | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        channel_options: Sequence[tuple[str, object]] = (),
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        keep_warm: float | None = None,
    ) -> None:
        if connect_timeout is not None and connect_timeout <= 0:
            raise LocalRefusal("connect_timeout must be positive (or None)")
        if keep_warm is not None and not KEEP_WARM_RANGE[0] <= keep_warm <= KEEP_WARM_RANGE[1]:
            raise LocalRefusal(f"keep_warm must be between {KEEP_WARM_RANGE[0]} and {KEEP_WARM_RANGE[1]} s (or None)")
        #: Seconds of silence after which the channel gets a health check (None: never).
        self.keep_warm = keep_warm
        #: Health checks sent to keep the channel warm (for tests and tuning).
        self.warm_pings = 0
        self._last_used = time.monotonic()
        self._c = _Common(
            target=target,
            tokens=as_token_source(token, token_refresh, refresh_margin),
            trust=trust or TlsTrust(),
            timeout=float(timeout),
            retry=retry or RetryPolicy(),
            connect_timeout=None if connect_timeout is None else float(connect_timeout),
            channel_options=list(channel_options),
        )
        #: True once the channel has connected (after that, calls never wait for it again).
        self._warm = False
        self._channel = self._secure_channel(target, self._c.trust.credentials(), options=self._c.options())
        self._sign = self._channel.unary_unary(
            SIGN_METHOD,
            request_serializer=signer_pb2.SignCertificateVerifyRequest.SerializeToString,
            response_deserializer=signer_pb2.SignCertificateVerifyResponse.FromString,
        )
        self._identity = self._channel.unary_unary(
            IDENTITY_METHOD,
            request_serializer=signer_pb2.GetIdentityRequest.SerializeToString,
            response_deserializer=signer_pb2.GetIdentityResponse.FromString,
        )
        # Raw bytes both ways: an empty HealthCheckRequest is b"" and the answer is not needed.
        self._health = self._channel.unary_unary(HEALTH_CHECK_METHOD)

    @property
    def target(self) -> str:
        return self._c.target

    @property
    def tokens(self) -> TokenSource:
        return self._c.tokens


class SignerClient(_ClientBase):
    """Blocking client. Safe to call from any thread, including from inside a running asyncio loop
    (its channel is grpc's threaded one, independent of any event loop), which is what
    :class:`~swqos_client.RemoteEd25519PrivateKey` relies on."""

    _secure_channel = staticmethod(grpc.secure_channel)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Connect now (warm-up): wait up to ``timeout`` (default ``connect_timeout``, else 5 s) for
        the channel's connection; raises :class:`ProxyUnreachable` naming the target if it is not up."""
        waited = timeout or self._c.connect_timeout or DEFAULT_CONNECT_TIMEOUT
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=waited)
        except grpc.FutureTimeoutError:
            ready.cancel()  # stop watching the channel's connectivity
            raise self._c.not_ready_error(waited) from None
        self._warm = True
        if self.keep_warm is not None and self._keeper is None:
            self._start_keeper()

    def _warm_up(self) -> None:
        self._last_used = time.monotonic()
        if self.keep_warm is not None and self._keeper is None:
            self._start_keeper()
        if self._warm or self._c.connect_timeout is None:
            return
        try:
            self.wait_ready(self._c.connect_timeout)
        except ProxyUnreachable:
            self._warm = True  # waited once; from now on each call reports the transport's reason at once

    _keeper: threading.Thread | None = None
    _stop_keeper: threading.Event | None = None

    def _start_keeper(self) -> None:
        """One daemon thread per client: a health check whenever the channel sat idle ``keep_warm`` s."""
        interval = self.keep_warm
        assert interval is not None
        stop = self._stop_keeper = threading.Event()

        def run() -> None:
            while not stop.wait(max(interval - (time.monotonic() - self._last_used), 0.001)):
                if time.monotonic() - self._last_used < interval:
                    continue
                self._last_used = time.monotonic()
                with contextlib.suppress(grpc.RpcError, ValueError):  # ValueError: channel closed meanwhile
                    self._health(b"", timeout=max(interval, 0.5))
                    self.warm_pings += 1

        self._keeper = threading.Thread(target=run, name="swqos-keep-warm", daemon=True)
        self._keeper.start()

    def sign_certificate_verify(
        self, payload: bytes, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> bytes:
        """Sign one TLS 1.3 client CertificateVerify; returns the 64-byte Ed25519 signature."""
        payload = check_client_certificate_verify(payload)
        resp = self._call(self._sign, _sign_request(payload), timeout, metadata)
        return _check_signature(resp)

    def get_identity(self, nonce: bytes = b"", *, timeout: float | None = None, metadata: Metadata = ()) -> Identity:
        req = signer_pb2.GetIdentityRequest(nonce=_check_nonce(nonce))
        return _check_identity(self._call(self._identity, req, timeout, metadata))

    def _call(self, method: grpc.UnaryUnaryMultiCallable, req: object, timeout: float | None, extra: Metadata):
        budget = self._c.total(timeout)
        self._warm_up()
        deadline = time.monotonic() + budget
        attempts = 0
        last: SwqosError | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._c.deadline_error(budget, attempts, last)
            md = self._c.metadata(self._c.tokens.get(), extra)
            attempts += 1
            try:
                return method(req, timeout=remaining, metadata=md)
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                err = error_from_status(
                    code, exc.details(), exc.trailing_metadata(), target=self._c.target, attempts=attempts  # type: ignore[attr-defined]
                )
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self._c.deadline_error(budget, attempts, last)
            delay = self._c.retry.next_delay(
                code, attempts, err.retry_after, deadline - time.monotonic(), self._c.rng
            )
            if delay is None:
                raise err
            last = err
            time.sleep(delay)

    def close(self) -> None:
        if self._stop_keeper is not None:
            self._stop_keeper.set()
            if self._keeper is not None and self._keeper is not threading.current_thread():
                self._keeper.join(2.0)
        self._channel.close()

    def __enter__(self) -> SignerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSignerClient(_ClientBase):
    """asyncio client (grpc.aio). Create and use it inside one event loop."""

    _secure_channel = staticmethod(grpc.aio.secure_channel)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Connect now (warm-up): wait up to ``timeout`` (default ``connect_timeout``, else 5 s) for
        the channel's connection; raises :class:`ProxyUnreachable` naming the target if it is not up."""
        waited = timeout or self._c.connect_timeout or DEFAULT_CONNECT_TIMEOUT
        try:
            async with asyncio.timeout(waited):
                await self._channel.channel_ready()
        except TimeoutError:
            raise self._c.not_ready_error(waited) from None
        self._warm = True
        if self.keep_warm is not None and self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep_warm(self.keep_warm),
                                                                  name="swqos-keep-warm")

    async def _warm_up(self) -> None:
        self._last_used = time.monotonic()
        if self.keep_warm is not None and self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep_warm(self.keep_warm),
                                                                  name="swqos-keep-warm")
        if self._warm or self._c.connect_timeout is None:
            return
        try:
            await self.wait_ready(self._c.connect_timeout)
        except ProxyUnreachable:
            self._warm = True  # waited once; from now on each call reports the transport's reason at once

    _keeper: asyncio.Task[None] | None = None

    async def _keep_warm(self, interval: float) -> None:
        """A health check whenever the channel sat idle ``interval`` s (a task on the client's loop)."""
        while True:
            await asyncio.sleep(max(interval - (time.monotonic() - self._last_used), 0.001))
            if time.monotonic() - self._last_used < interval:
                continue
            self._last_used = time.monotonic()
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._health(b"", timeout=max(interval, 0.5))
                self.warm_pings += 1

    async def sign_certificate_verify(
        self, payload: bytes, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> bytes:
        payload = check_client_certificate_verify(payload)
        resp = await self._call(self._sign, _sign_request(payload), timeout, metadata)
        return _check_signature(resp)

    async def get_identity(
        self, nonce: bytes = b"", *, timeout: float | None = None, metadata: Metadata = ()
    ) -> Identity:
        req = signer_pb2.GetIdentityRequest(nonce=_check_nonce(nonce))
        return _check_identity(await self._call(self._identity, req, timeout, metadata))

    async def _call(self, method, req: object, timeout: float | None, extra: Metadata):  # type: ignore[no-untyped-def]
        budget = self._c.total(timeout)
        await self._warm_up()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        attempts = 0
        last: SwqosError | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._c.deadline_error(budget, attempts, last)
            md = self._c.metadata(await self._c.tokens.aget(), extra)
            attempts += 1
            try:
                return await method(req, timeout=remaining, metadata=md)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                err = error_from_status(
                    code, exc.details(), exc.trailing_metadata(), target=self._c.target, attempts=attempts
                )
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self._c.deadline_error(budget, attempts, last)
            delay = self._c.retry.next_delay(code, attempts, err.retry_after, deadline - loop.time(), self._c.rng)
            if delay is None:
                raise err
            last = err
            await asyncio.sleep(delay)

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self._channel.close()

    async def __aenter__(self) -> AsyncSignerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
