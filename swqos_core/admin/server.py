"""The admin listener: the admin API, ``/metrics`` and ``/healthz``, next to the host-proxy.

Routes (JSON in and out, one request per connection):

    GET  /healthz           200 when serving, 503 with the reason otherwise (truthful readiness)
    GET  /metrics           Prometheus text exposition
    GET  /v1/status         version, identity, enclave, signature counts, halts, drain, plugins
    POST /v1/<operation>    see swqos_core.admin.operations.ROUTES

Where it may listen (threat T7, "no discretion left to the validator"): a loopback address, a
Unix socket (created 0600), or, only with mutual TLS (``client_ca``), any other address. Anything
else is a startup error. Every authenticated request and every refused credential is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swqos_core import logs
from swqos_core.admin.auth import Actor, AdminAuth, AuthFailure, build_token_authenticator
from swqos_core.admin.http import MAX_HEAD, READ_TIMEOUT, HttpError, Request, Response, read_request
from swqos_core.admin.operations import ROUTES, AdminError, Operations
from swqos_core.admin.settings import AdminSettings
from swqos_core.audit import AuditLog
from swqos_core.errors import ConfigError
from swqos_core.layers import ClientAddress
from swqos_core.metrics import Metrics
from swqos_core.net import parse_ip

log = logging.getLogger("swqos.admin")

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class ListenAddress:
    kind: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""


def parse_listen(listen: str) -> ListenAddress:
    if listen.startswith("unix://"):
        path = listen[len("unix://"):]
        if not path.startswith("/"):
            raise ConfigError(f"[proxy.admin] listen: a unix address needs an absolute path (unix:///run/x.sock), "
                              f"got {listen!r}")
        return ListenAddress("unix", path=path)
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"[proxy.admin] listen: expected HOST:PORT or unix:///path, got {listen!r}")
    host = host.strip("[]")
    if host != "localhost" and parse_ip(host) is None:
        raise ConfigError(f"[proxy.admin] listen: the host must be an IP address or localhost, got {host!r}")
    return ListenAddress("tcp", host=host, port=int(port))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: AdminSettings) -> ListenAddress:
    """T7: the admin API is never reachable from elsewhere without mutual TLS. Raises ConfigError."""
    addr = parse_listen(settings.listen)
    if addr.kind == "tcp" and not is_loopback(addr.host) and settings.client_ca is None:
        raise ConfigError(
            f"[proxy.admin] listen = {settings.listen!r} is not a loopback address; the admin API is served "
            "beyond this host only with mutual TLS. Set client_ca (with tls_cert and tls_key), or listen on "
            "127.0.0.1, [::1] or a unix:// socket (threat model T7)")
    if settings.token_store is None and settings.client_ca is None:
        raise ConfigError("[proxy.admin] no way to authenticate the operator: set token_store (Argon2id admin "
                          "API tokens, swqos token create --role admin) and/or client_ca (mutual TLS)")
    return addr


def tls_context(settings: AdminSettings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
        if settings.client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(settings.client_ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[proxy.admin] cannot load TLS material: {exc}") from None
    return ctx


def _certificate_subject(writer: asyncio.StreamWriter) -> str | None:
    """Common name of the verified client certificate (the TLS layer refused unverified ones)."""
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)[:128]
    return "unnamed-certificate"


def _client(writer: asyncio.StreamWriter) -> ClientAddress:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        ip = parse_ip(str(peer[0]))
        return ClientAddress(ip, "admin", f"{'ipv6' if ':' in str(peer[0]) else 'ipv4'}:{peer[0]}:{peer[1]}")
    return ClientAddress(None, "admin", "unix:admin")


@dataclass
class AdminServer:
    settings: AdminSettings
    operations: Operations
    auth: AdminAuth
    audit: AuditLog
    metrics: Metrics
    state: Any
    server: asyncio.Server | None = None
    address: ListenAddress | None = None
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        addr = check_exposure(self.settings)
        ctx = tls_context(self.settings)
        self.address = addr
        try:
            if addr.kind == "unix":
                self._prepare_socket_path(addr.path)
                old = os.umask(0o777 & ~self.settings.socket_mode)
                try:
                    self.server = await asyncio.start_unix_server(self._handle, path=addr.path, ssl=ctx,
                                                                  limit=MAX_HEAD)
                finally:
                    os.umask(old)
                os.chmod(addr.path, self.settings.socket_mode)
            else:
                self.server = await asyncio.start_server(self._handle, addr.host, addr.port, ssl=ctx, limit=MAX_HEAD)
                self.port = self.server.sockets[0].getsockname()[1]
        except OSError as exc:
            raise ConfigError(f"[proxy.admin] cannot listen on {self.settings.listen}: {exc}") from None
        where = addr.path if addr.kind == "unix" else f"{addr.host}:{self.port}"
        log.info("admin API and metrics on %s (%s)", where,
                 "mutual TLS" if self.settings.client_ca else ("TLS" if ctx else "plain HTTP, local only"))

    @staticmethod
    def _prepare_socket_path(path: str) -> None:
        p = Path(path)
        if p.exists():
            if not stat.S_ISSOCK(p.stat().st_mode):
                raise ConfigError(f"[proxy.admin] {path} exists and is not a socket")
            p.unlink()  # stale socket from a previous run
        p.parent.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            self.server = None
        for task in list(self._tasks):
            task.cancel()
        if self.address is not None and self.address.kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address.path)

    # --- one connection ----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        rid = secrets.token_hex(8)
        logs.set_request_id(rid)
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    request = await read_request(reader, self.settings.max_body_bytes)
            except HttpError as exc:
                response = Response.json(exc.status, {"error": exc.message})
            except TimeoutError:
                response = Response.json(408, {"error": "request not received in time"})
            else:
                try:
                    response = await self._dispatch(request, _client(writer), _certificate_subject(writer), rid)
                except Exception:  # fail closed: a bug answers 500, and changes nothing further
                    log.exception("admin request failed")
                    response = Response.json(500, {"error": "internal error", "request_id": rid})
            writer.write(response.encode())
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def _dispatch(self, request: Request, client: ClientAddress, certificate: str | None,
                        rid: str) -> Response:
        path = request.path
        if path in ("/metrics", "/healthz"):
            if request.method != "GET":
                return Response.json(405, {"error": "use GET"}, Allow="GET")
            if not self.settings.metrics_open:
                actor_or_response = await self._authenticate(request, client, certificate, rid, path.lstrip("/"))
                if isinstance(actor_or_response, Response):
                    return actor_or_response
            if path == "/metrics":
                return Response(200, await self.metrics.render(), PROMETHEUS_TEXT)
            reason = self.state.not_serving_reason()
            return Response.json(200 if reason is None else 503, {"serving": reason is None, "reason": reason})
        if not path.startswith("/v1/"):
            return Response.json(404, {"error": f"no such path {path[:64]!r}"})
        operation = path[len("/v1/"):]
        route = ROUTES.get(operation)
        if route is None:
            return Response.json(404, {"error": f"unknown operation {operation[:64]!r}",
                                       "operations": sorted(ROUTES)})
        method, handler_name, _ = route
        if request.method != method:
            return Response.json(405, {"error": f"use {method}"}, Allow=method)
        actor_or_response = await self._authenticate(request, client, certificate, rid, operation)
        if isinstance(actor_or_response, Response):
            return actor_or_response
        actor = actor_or_response
        params: dict[str, Any] = {}
        try:
            params = request.json()
            result = await getattr(self.operations, handler_name)(params)
        except (AdminError, HttpError) as exc:
            status = exc.status
            self._record(operation, "error", actor, client, rid, params, exc.message, status)
            return Response.json(status, {"error": exc.message, "request_id": rid})
        self._record(operation, "ok", actor, client, rid, params, None, 200)
        return Response.json(200, {"ok": True, "request_id": rid, **result})

    async def _authenticate(self, request: Request, client: ClientAddress, certificate: str | None, rid: str,
                            operation: str) -> Actor | Response:
        try:
            return await self.auth.authenticate(request.headers, client, certificate)
        except AuthFailure as exc:
            self.metrics.admin_auth_failure(exc.reason)
            self._record(operation, "refused", None, client, rid, None, exc.message, exc.status)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            if exc.retry_after is not None:
                headers["Retry-After"] = str(max(1, round(exc.retry_after)))
            return Response.json(exc.status, {"error": exc.message, "request_id": rid}, **headers)

    def _record(self, operation: str, outcome: str, actor: Actor | None, client: ClientAddress, rid: str,
                params: dict[str, Any] | None, detail: str | None, status: int) -> None:
        self.metrics.admin_request(operation, outcome)
        self.audit.admin(operation=operation, outcome=outcome, actor=str(actor) if actor else None,
                         client=str(client), request_id=rid, params=_safe_params(params), detail=detail,
                         status=status)


def _safe_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Only the parameters operations define go to the audit log (never a stray credential)."""
    if not params:
        return {}
    keep = ("sub", "jti", "cidrs", "rate", "sustained", "force")
    return {k: params[k] for k in keep if k in params}


# --- wiring into the host-proxy ---------------------------------------------------------------

@dataclass
class OpsRuntime:
    """Everything this package adds to a running host-proxy."""

    audit: AuditLog
    operations: Operations | None = None
    metrics: Metrics | None = None
    admin: AdminServer | None = None
    token_authenticator: Any = None

    async def close(self) -> None:
        if self.admin is not None:
            await self.admin.close()
        close = getattr(self.token_authenticator, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        await asyncio.to_thread(self.audit.close)


async def start_ops(*, settings: Any, app: Any, state: Any, pipeline: Any, enclave: Any) -> OpsRuntime:
    """Open the audit log, register the pipeline observers and start the admin listener.

    With neither ``[proxy] audit_log`` nor ``[proxy.admin]`` nothing is registered, and the
    pipeline skips building decisions altogether.
    """
    audit = AuditLog(settings.audit_log)
    try:
        audit.start()
    except OSError as exc:
        raise ConfigError(f"[proxy] audit_log: cannot open {settings.audit_log}: {exc}") from None
    runtime = OpsRuntime(audit)
    if audit.enabled:
        pipeline.observers.append(audit.decision)
    admin_settings: AdminSettings | None = settings.admin
    if admin_settings is None:
        return runtime
    try:
        check_exposure(admin_settings)  # before building anything: a refused exposure is the first error
        authenticator = build_token_authenticator(admin_settings, app, state=state)
        runtime.token_authenticator = authenticator
        start = getattr(authenticator, "start", None)
        if start is not None:
            await start()
        operations = Operations(app=app, state=state, enclave=enclave,
                                known_subjects_max=admin_settings.known_subjects_max)
        auth = AdminAuth(admin_settings, authenticator)
        metrics = Metrics(state=state, enclave=enclave, app=app, audit=audit, admin_guard=_GuardView(auth.guard))
        admin = AdminServer(admin_settings, operations, auth, audit, metrics, state)
        await admin.start()
    except BaseException:
        await runtime.close()
        raise
    pipeline.observers.append(operations.observe)
    pipeline.observers.append(metrics.observe)
    runtime.operations, runtime.metrics, runtime.admin = operations, metrics, admin
    if not audit.enabled:
        log.warning("[proxy] audit_log is not set: signing decisions are not audited (admin actions still go "
                    "to the process log)")
    return runtime


@dataclass
class _GuardView:
    """Lets the metrics collector read the admin guard like an auth layer's (``.guard``)."""

    guard: Any


__all__ = ["AdminServer", "OpsRuntime", "check_exposure", "is_loopback", "parse_listen", "start_ops"]
