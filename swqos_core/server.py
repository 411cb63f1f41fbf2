"""The host-proxy's gRPC server: TLS 1.3 only, size cap first, deadline always, health and reflection.

The Signer methods are registered with raw-bytes (de)serializers so the body size is checked
before anything is parsed, and the decode is strict: a request whose bytes are not exactly the
canonical encoding of a SignCertificateVerifyRequest (unknown fields, wrong wire types,
repeated fields) is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from swqos_core import TLS13_ONLY_CIPHER_SUITES, __version__, memory
from swqos_core.check import strict_rules
from swqos_core.config import AppConfig, ProxySettings
from swqos_core.enclave.client import EnclaveClient
from swqos_core.errors import ConfigError, Rejection, invalid_argument, resource_exhausted
from swqos_core.layers import Call, Closable, RequestHead, RpcName, Startable
from swqos_core.logs import set_request_id
from swqos_core.net import parse_listen
from swqos_core.pipeline import Pipeline, layer_start_order
from swqos_core.plugins import App, build_app, collect_contributions, shutdown_plugins
from swqos_core.reflection import GenericOnly, enable_server_reflection
from swqos_core.state import ServiceState
from swqos_proto import SERVICE, signer_pb2

log = logging.getLogger("swqos.server")

#: gRPC refuses anything larger before our handler runs; our own cap (≤ this) answers the rest.
HARD_MESSAGE_CAP = 8 * 1024
#: Large enough that an oversized token reaches the authenticator and gets a precise refusal.
MAX_METADATA_BYTES = 16 * 1024


class LazyAuthContext(Mapping[str, Sequence[bytes]]):
    """The TLS auth context, fetched from grpc only if a layer looks at it (only origin-pull
    certificate checks do; building it costs several microseconds per call)."""

    __slots__ = ("_context", "_value")

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context
        self._value: Mapping[str, Sequence[bytes]] | None = None

    def _get(self) -> Mapping[str, Sequence[bytes]]:
        if self._value is None:
            self._value = self._context.auth_context()
        return self._value

    def __getitem__(self, key: str) -> Sequence[bytes]:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class SignerService:
    """The two RPCs of ``swqos.v1.Signer``, as thin adapters around the pipeline."""

    def __init__(self, pipeline: Pipeline, settings: ProxySettings) -> None:
        self.pipeline = pipeline
        self.deadline = settings.deadline_ms / 1000
        #: Calls in progress, bounded by ``[proxy] max_concurrent_rpcs``: counted here (not only by
        #: grpc's own cap, set higher as a backstop) so a refusal is a Decision with a metric label.
        self.max_calls = settings.max_concurrent_rpcs
        self.calls = 0

    # Both RPCs are unary on the wire but served as stream-unary: the handler then runs when the
    # stream's HEADERS arrive, not when its body does, so the deadline also bounds a client that
    # opens a stream and never sends the body (a unary handler would not run until it did).
    async def sign(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        call = self._call("SignCertificateVerify", context)
        try:
            self._enter(call)
            try:
                with Deadline(call.deadline):
                    call.raw = await self._read_one(call, context)
                    signature = await self.pipeline.sign(call)
            finally:
                self.calls -= 1
        except Rejection as exc:
            await self._refuse(context, exc)
        except TimeoutError:
            await self._refuse(context, _deadline_exceeded(), call)
        return signer_pb2.SignCertificateVerifyResponse(signature=signature).SerializeToString()

    async def identity(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        call = self._call("GetIdentity", context)
        try:
            self._enter(call)
            try:
                with Deadline(call.deadline):
                    call.raw = await self._read_one(call, context)
                    public_key, document = await self.pipeline.identity(call)
            finally:
                self.calls -= 1
        except Rejection as exc:
            await self._refuse(context, exc)
        except TimeoutError:
            await self._refuse(context, _deadline_exceeded(), call)
        return signer_pb2.GetIdentityResponse(public_key=public_key, attestation_document=document).SerializeToString()

    def _enter(self, call: Call) -> None:
        """Count the call in, or refuse it at once when ``max_concurrent_rpcs`` are in progress."""
        if self.calls >= self.max_calls:
            rejection = resource_exhausted("too many calls in progress on this proxy; retry shortly",
                                           retry_after=0.05, label="too_many_calls", stage="admission")
            self.pipeline.decide(call, rejection)
            raise rejection
        self.calls += 1

    async def _read_one(self, call: Call, context: grpc.aio.ServicerContext) -> bytes:
        """Exactly one request message, as a unary method has; anything else is a malformed call."""
        first = await context.read()
        if first is grpc.aio.EOF or (await context.read()) is not grpc.aio.EOF:
            rejection = invalid_argument("a call carries exactly one request message", label="malformed",
                                         stage="decode")
            self.pipeline.decide(call, rejection)
            raise rejection
        return first  # type: ignore[return-value]

    # --- helpers ---------------------------------------------------------------------------
    def _call(self, rpc: RpcName, context: grpc.aio.ServicerContext) -> Call:
        now = time.monotonic()
        remaining = context.time_remaining()
        budget = self.deadline if remaining is None else min(self.deadline, remaining)
        head = RequestHead(
            rpc=rpc,
            peer=context.peer(),
            metadata=context.invocation_metadata() or (),  # a tuple of (key, value) tuples, built per call
            auth_context=LazyAuthContext(context),
            # A correlation id, not a secret: a fast PRNG is enough and saves a syscall per call.
            request_id=f"{random.getrandbits(64):016x}",
        )
        set_request_id(head.request_id)  # this call's task: every log line carries it (swqos_core.logs)
        return Call(head=head, payload=b"", deadline=now + budget, started=now)

    async def _refuse(self, context: grpc.aio.ServicerContext, rejection: Rejection, call: Call | None = None) -> None:
        if call is not None:
            self.pipeline.decide(call, rejection)
        if rejection.retry_after is not None:
            context.set_trailing_metadata((("retry-after", f"{max(rejection.retry_after, 0.0):.3f}"),))
        await context.abort(rejection.code, rejection.reason)


class Deadline:
    """``with Deadline(when):`` raises TimeoutError out of the block when ``when`` (``time.monotonic()``)
    passes: the handler's task is cancelled then, as :func:`asyncio.timeout_at` does, without its
    two coroutines and state machine per call. A cancellation from elsewhere (the client went away,
    shutdown) still propagates as CancelledError."""

    __slots__ = ("cancelling", "task", "timer")

    def __init__(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        self.task = asyncio.current_task(loop)
        assert self.task is not None
        self.cancelling = self.task.cancelling()
        self.timer = loop.call_at(loop.time() + (when - time.monotonic()), self.task.cancel, _DEADLINE)

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.timer.cancel()
        if kind is asyncio.CancelledError and exc is not None and exc.args == (_DEADLINE,) \
                and self.task.uncancel() <= self.cancelling:
            raise TimeoutError from None


_DEADLINE = "swqos: the call's deadline passed"


def _deadline_exceeded() -> Rejection:
    return Rejection(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded", stage="deadline", label="deadline")


def _health_updater(state: ServiceState, servicer: health.aio.HealthServicer) -> None:
    serving = state.serving
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING

    async def push() -> None:
        for name in ("", SERVICE):
            await servicer.set(name, status)

    with contextlib.suppress(RuntimeError):  # no running loop at import-time construction
        asyncio.get_running_loop().create_task(push())


def server_credentials(settings: ProxySettings) -> grpc.ServerCredentials:
    try:
        key, cert = settings.tls_key.read_bytes(), settings.tls_cert.read_bytes()
        client_ca = settings.client_ca.read_bytes() if settings.client_ca else None
    except OSError as exc:
        raise ConfigError(f"[proxy] cannot read TLS material: {exc}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def refuses_tls12(host: str, port: int) -> bool:
    """Try a TLS 1.2-only handshake against ourselves; True when it fails as it must."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we probe the protocol version, not the certificate
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), 5)
    except (ssl.SSLError, ConnectionError, OSError, TimeoutError):
        return True
    writer.close()
    return False


async def tls12_refused(settings: ProxySettings, host: str, port: int) -> bool:
    """Prove that this process's gRPC TLS refuses TLS 1.2.

    Without client authentication, probe the real listener. With ``client_ca`` set, a TLS 1.2
    handshake without a client certificate fails whatever the protocol policy (both show up as a
    reset), so that probe would prove nothing: probe a throwaway twin listener instead, same
    certificate and the same process-wide cipher policy, without client authentication.
    """
    if settings.client_ca is None:
        probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)  # noqa: S104
        return await refuses_tls12(probe_host, port)
    twin = grpc.aio.server()
    twin_port = twin.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())]))
    await twin.start()
    try:
        return await refuses_tls12("127.0.0.1", twin_port)
    finally:
        await twin.stop(None)


@dataclass
class ProxyServer:
    """A running host-proxy: the gRPC server, the enclave connection and the layers."""

    app: App
    state: ServiceState
    pipeline: Pipeline
    enclave: EnclaveClient
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    trimmer: asyncio.Task[None] | None = None

    async def stop(self, grace: float | None = 1.0) -> None:
        if self.trimmer is not None:
            self.trimmer.cancel()
        await self.server.stop(grace)
        await close_layers(self.app)
        await self.enclave.close()
        await shutdown_plugins(self.app)


async def start_layers(app: App) -> None:
    """Start every layer in :func:`layer_start_order`; the kill switch first (a persisted halt
    applies before the first request), then services, then the stages' layers."""
    for kind in layer_start_order():
        for _, layer in app.layers.get(kind, []):
            if kind == "service":
                await layer.start(app)
            elif isinstance(layer, Startable):
                await layer.start()


async def close_layers(app: App) -> None:
    """Close layers in the reverse start order; one layer's failure is logged, the rest still close."""
    for kind in reversed(layer_start_order()):
        for name, layer in reversed(app.layers.get(kind, [])):
            if isinstance(layer, Closable):
                try:
                    await layer.close()
                except Exception:  # shutting down: log it, close the others
                    log.exception("closing %s layer %r failed", kind, name)


def grpc_options(settings: ProxySettings, *, reuse_port: bool = False) -> list[tuple[str, int]]:
    """The transport limits of the public listener (docs/operations.md, "limits and floods").
    ``reuse_port`` only in a worker of a ``swqos serve`` supervisor holding the port's lock (swqos_core.workers)."""
    return [
        ("grpc.max_receive_message_length", HARD_MESSAGE_CAP),
        ("grpc.max_send_message_length", 64 * 1024),
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
        ("grpc.server_handshake_timeout_ms", settings.tls_handshake_timeout_ms),
        ("grpc.max_allowed_incoming_connections", settings.max_connections),
        ("grpc.max_connection_idle_ms", int(settings.connection_idle_s * 1000)),
        ("grpc.max_connection_age_ms", int(settings.connection_max_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.connection_age_grace_s * 1000)),
        # Exclusive port: grpcio sets SO_REUSEPORT on Linux by default, so a second proxy on the
        # same address would silently share the traffic (and answer our own TLS probe).
        ("grpc.so_reuseport", int(reuse_port)),
        # CDNs cut idle HTTP/2 connections; keep-alives must not get us a GOAWAY from clients' pings.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def split_listen(listen: str) -> tuple[str, int]:
    try:
        addr = parse_listen(listen, where="[proxy] listen")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return addr.host, addr.port


async def start_proxy(cfg: AppConfig, *, extra_plugins: tuple = (), blocked: tuple = (),
                      reuse_port: bool = False) -> ProxyServer:
    """Build every layer, bind the TLS 1.3 listener, prove TLS 1.2 is refused, start serving.
    ``reuse_port``: this is one of a supervisor's workers, sharing the port with its siblings."""
    if os.environ.get("GRPC_SSL_CIPHER_SUITES") != TLS13_ONLY_CIPHER_SUITES:
        raise ConfigError("GRPC_SSL_CIPHER_SUITES was changed after swqos_core was imported; TLS 1.3-only "
                          "cannot be guaranteed")
    settings: ProxySettings = cfg.settings
    if settings.malloc_arenas:
        memory.limit_arenas(settings.malloc_arenas)
    host, port = split_listen(settings.listen)
    if not parse_listen(settings.listen, where="[proxy] listen").is_loopback:
        for rule in strict_rules(cfg):  # `swqos config check` makes these errors for this listener
            log.warning("unsafe for a public listener: %s", rule)
    state = ServiceState(__version__)
    app = build_app(cfg, state=state, extra_plugins=extra_plugins, blocked=blocked)
    enclave = EnclaveClient(settings.enclave, state, max_inflight=settings.max_enclave_inflight,
                            ping_interval=settings.enclave_ping_interval)
    app.enclave = enclave
    if reuse_port and not app.one("store").shared:  # config.parse refuses "memory"; a plugin's store may not be shared either
        raise ConfigError(f"[proxy] workers > 1 needs a shared state store; {cfg.pipeline.store!r} is per process")
    contributions = collect_contributions(app)  # before anything binds: collisions stop startup here
    pipeline = Pipeline(
        client_ip=app.all("client_ip"),
        rate_limit=app.all("rate_limit"),
        auth=app.all("auth"),
        validate=app.all("validate"),
        enclave=enclave,
        state=state,
        max_request_bytes=settings.max_request_bytes,
        observers=[observer for _, _, observer in contributions.observers],
        stage_timing_every=settings.stage_timing_every,
    )
    server = grpc.aio.server(options=grpc_options(settings, reuse_port=reuse_port),
                             maximum_concurrent_rpcs=2 * settings.max_concurrent_rpcs)
    service = SignerService(pipeline, settings)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "SignCertificateVerify": grpc.stream_unary_rpc_method_handler(service.sign),
        "GetIdentity": grpc.stream_unary_rpc_method_handler(service.identity),
    }),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, GenericOnly(server))
    enable_server_reflection((SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server)
    proxy = ProxyServer(app, state, pipeline, enclave, server, 0, health_servicer)
    try:
        await start_layers(app)
        try:
            proxy.port = server.add_secure_port(f"{'[' + host + ']' if ':' in host else host}:{port}",
                                                server_credentials(settings))
        except RuntimeError:
            raise ConfigError(f"[proxy] listen: cannot bind {settings.listen}: the address is in use (another "
                              "swqos serve, or another program, listens there) or not available") from None
        state.subscribe(lambda: _health_updater(state, health_servicer))
        await server.start()
        if not await tls12_refused(settings, host, proxy.port):
            raise ConfigError("a TLS 1.2 handshake succeeded against this proxy; refusing to serve (docs/tls.md)")
        await enclave.start()
        for result in app.pm.hook.swqos_startup(app=app):
            if inspect.isawaitable(result):
                await result
        if settings.memory_trim_interval_s:
            proxy.trimmer = asyncio.create_task(memory.trim_periodically(settings.memory_trim_interval_s))
    except BaseException:
        await proxy.stop(None)
        raise
    log.info("swqos %s host-proxy listening on %s:%d (TLS 1.3 only)", __version__, host, proxy.port)
    return proxy
