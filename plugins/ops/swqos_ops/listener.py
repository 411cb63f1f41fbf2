"""The ``admin`` service: the admin API, ``/metrics`` and ``/healthz``, next to the host-proxy.

Routes (JSON in and out, one request per connection):

    GET  /healthz           200 when serving, 503 with the reason otherwise (truthful readiness)
    GET  /metrics           Prometheus text exposition
    GET  /v1/<operation>    an operation that changes nothing (params in the query string, or POST)
    POST /v1/<operation>    any operation (params as a JSON object)

The operations are ``app.contributions.admin_operations``: this plugin's own (status, trader,
operations, drain, undrain) and whatever every other plugin registered.

Where it may listen (threat T7, "no discretion left to the validator"): a loopback address, a
Unix socket (created 0600), or, only with mutual TLS (``client_ca``), any other address. The check
runs when the settings are built, before anything binds. Every authenticated request and every
refused credential is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import ssl
import stat
import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import h11

from swqos_core import logs
from swqos_core.errors import ConfigError
from swqos_core.extensions import Actor, AdminError, AdminOperation, MetricFamily, Sample
from swqos_core.layers import BuildContext, ClientAddress
from swqos_core.net import ListenAddress, parse_ip
from swqos_ops import pages
from swqos_ops.audit import AuditLog, AuditService
from swqos_ops.auth import AdminAuth, AuthFailure, TokenVerifier, build_token_verifier
from swqos_ops.http import HttpError, Request, Response, read_request, write_response
from swqos_ops.metrics import MetricsEndpoint
from swqos_ops.operations import KnownSubjects, OperationTable
from swqos_ops.settings import WHERE, AdminSettings, check_exposure

log = logging.getLogger("swqos.admin")

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

#: ``handler(request, actor) -> Response`` for a mounted path prefix (a dashboard's pages).
RouteHandler = Callable[[Request, Actor], Awaitable[Response]]


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
        raise ConfigError(f"{WHERE} cannot load TLS material: {exc}") from None
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


def _peer_credentials(writer: asyncio.StreamWriter) -> dict[str, int] | None:
    """uid and pid of a Unix-socket caller (SO_PEERCRED), for the audit line."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                             struct.calcsize("3i")))
    except OSError:
        return None
    return {"uid": uid, "pid": pid}


class AdminService:
    """The admin listener, a :class:`~swqos_core.layers.Service`."""

    def __init__(self, settings: AdminSettings, ctx: BuildContext) -> None:
        self.settings = settings
        try:
            self.address: ListenAddress = check_exposure(settings)  # T7, before anything binds
        except ValueError as exc:
            raise ConfigError(f"{WHERE} {exc}") from None
        self.tls = tls_context(settings)  # unreadable TLS material is a startup error, now
        self.known = KnownSubjects(settings.known_subjects_max)
        self.metrics = MetricsEndpoint(())
        self.table = OperationTable({}, self.known)
        self.audit = AuditLog(None)  # the audit service's log once started, else the process log only
        self.auth: AdminAuth | None = None
        self.verifier: TokenVerifier | None = None
        self.server: asyncio.Server | None = None
        self.port = 0
        self.state: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections = 0
        self.routes: dict[str, RouteHandler] = {}

    def mount(self, prefix: str, handler: RouteHandler) -> None:
        """Serve every path under ``prefix`` (``/ui/``) with ``handler``, behind this listener's
        authentication (the caller is authenticated first; a refusal never reaches the handler).
        Call it before :meth:`start` (from a contribution hook); ``/v1/`` and the two fixed paths
        cannot be taken."""
        if not (prefix.startswith("/") and prefix.endswith("/") and len(prefix) > 2):
            raise ValueError(f"a mounted prefix looks like /name/, got {prefix!r}")
        if prefix == "/v1/" or prefix in self.routes or prefix.rstrip("/") in ("/metrics", "/healthz"):
            raise ValueError(f"{prefix!r} is already served")
        self.routes[prefix] = handler

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, app: Any) -> None:
        self.state = app.state
        self.table = OperationTable(app.contributions.admin_operations, self.known)
        self.metrics.collectors = list(app.contributions.metrics)
        audit = next((s for _, s in app.layers.get("service", []) if isinstance(s, AuditService)), None)
        if audit is not None:
            self.audit = audit.log
        self.verifier = build_token_verifier(self.settings, app)
        if self.verifier is not None:
            await self.verifier.start()
        self.auth = AdminAuth(self.settings, self.verifier)
        addr = self.address
        limit = self.settings.max_head_bytes
        try:
            if addr.kind == "unix":
                await self._prepare_socket_path(addr.path)
                old = os.umask(0o777 & ~self.settings.socket_mode)
                try:
                    self.server = await asyncio.start_unix_server(self._handle, path=addr.path, ssl=self.tls,
                                                                  limit=limit)
                finally:
                    os.umask(old)
                os.chmod(addr.path, self.settings.socket_mode)
            else:
                self.server = await asyncio.start_server(self._handle, addr.host, addr.port, ssl=self.tls,
                                                         limit=limit)
                self.port = self.server.sockets[0].getsockname()[1]
        except OSError as exc:
            raise ConfigError(f"{WHERE} cannot listen on {self.settings.listen}: {exc}") from None
        where = addr.path if addr.kind == "unix" else f"{addr.host}:{self.port}"
        log.info("admin API and metrics on %s (%s)", where,
                 "mutual TLS" if self.settings.client_ca else ("TLS" if self.tls else "plain HTTP, local only"))
        if not self.audit.enabled:
            log.warning("the audit service is not selected ([pipeline] services): signing decisions are not "
                        "audited (admin actions still go to the process log)")

    async def _prepare_socket_path(self, path: str) -> None:
        p = Path(path)
        if p.exists() or p.is_symlink():
            if not stat.S_ISSOCK(p.lstat().st_mode):
                raise ConfigError(f"{WHERE} {path} exists and is not a socket")
            try:  # a live listener answers: never take its address from under it
                _, w = await asyncio.wait_for(asyncio.open_unix_connection(path), 1.0)
            except (OSError, TimeoutError):
                p.unlink()  # stale socket from a previous run
            else:
                w.close()
                raise ConfigError(f"{WHERE} {path} is in use by another running process")
        p.parent.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            self.server = None
            if self.address.kind == "unix":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.address.path)
        if self.verifier is not None:
            try:
                await self.verifier.close()
            except Exception:  # shutting down: log it, go on
                log.exception("closing the admin token verifier failed")

    # --- one connection ----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._connections += 1
        rid = secrets.token_hex(8)
        logs.set_request_id(rid)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.settings.max_head_bytes)
        try:
            if self._connections > self.settings.max_connections:
                self.metrics.requests.admin_connections_refused.inc()
                response = Response.json(503, {"error": "too many admin connections; retry"}, **{"Retry-After": "1"})
            else:
                response = await self._answer(reader, writer, conn, rid)
            with contextlib.suppress(ConnectionError, OSError, h11.LocalProtocolError):
                await write_response(writer, conn, response)
        except asyncio.CancelledError:
            pass  # close() cancels open connections; ending quietly keeps asyncio from logging each one
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: h11.Connection,
                      rid: str) -> Response:
        try:
            async with asyncio.timeout(self.settings.read_timeout_seconds):
                request = await read_request(reader, conn, self.settings.max_body_bytes,
                                             self.settings.max_head_bytes)
        except HttpError as exc:
            return Response.json(exc.status, {"error": exc.message})
        except TimeoutError:
            return Response.json(408, {"error": "request not received in time"})
        except (ConnectionError, OSError):
            return Response.json(400, {"error": "connection failed"})
        try:
            return await self._dispatch(request, _client(writer), _certificate_subject(writer), rid,
                                        _peer_credentials(writer))
        except Exception:  # fail closed: a bug answers 500, and changes nothing further
            log.exception("admin request failed")
            return Response.json(500, {"error": "internal error", "request_id": rid})

    async def _dispatch(self, request: Request, client: ClientAddress, certificate: str | None, rid: str,
                        peer: dict[str, int] | None) -> Response:
        path = request.path
        if path in ("/metrics", "/healthz"):
            if request.method != "GET":
                return Response.json(405, {"error": "use GET"}, Allow="GET")
            if not self.settings.metrics_open:
                actor = await self._authenticate(request, client, certificate, rid, path.lstrip("/"), peer)
                if isinstance(actor, Response):
                    return actor
            if path == "/metrics":
                return Response(200, await self.metrics.render(), PROMETHEUS_TEXT)
            reason = self.state.not_serving_reason()
            return Response.json(200 if reason is None else 503, {"serving": reason is None, "reason": reason})
        mounted = next((p for p in self.routes if path.startswith(p)), None)
        if mounted is not None:
            actor = await self._authenticate(request, client, certificate, rid, mounted.strip("/"), peer)
            if isinstance(actor, Response):
                return actor
            pages.enter(client, rid, peer)  # for a page's PageHost.invoke / .audit
            return await self.routes[mounted](request, actor)
        if not path.startswith("/v1/"):
            return Response.json(404, {"error": f"no such path {path[:64]!r}"})
        name = path[len("/v1/"):]
        op = self.table.get(name)
        if op is None:
            return Response.json(404, {"error": f"unknown operation {name[:64]!r}",
                                       "operations": sorted(self.table.operations)})
        allowed = ("POST",) if op.mutating else ("GET", "POST")
        if request.method not in allowed:
            return Response.json(405, {"error": f"use {' or '.join(allowed)}"}, Allow=", ".join(allowed))
        actor = await self._authenticate(request, client, certificate, rid, name, peer)
        if isinstance(actor, Response):
            return actor
        try:
            params = request.params()
        except HttpError as exc:
            self._record(op, "error", actor, client, rid, {}, exc.message, exc.status, peer)
            return Response.json(exc.status, {"error": exc.message, "request_id": rid})
        status, body = await self.run_operation(op, params, actor, client, rid, peer)
        return Response.json(status, body)

    async def run_operation(self, op: AdminOperation, params: dict[str, Any], actor: Actor, client: ClientAddress,
                            rid: str, peer: dict[str, int] | None) -> tuple[int, dict[str, Any]]:
        """Check, run and audit one operation: the one path for ``/v1/<name>`` and for mounted pages
        (:class:`~swqos_ops.pages.PageHost`). Returns (HTTP status, JSON body)."""
        try:
            self.table.check(op, params)
            result = await op.handler(params, actor)
            if not isinstance(result, Mapping):
                raise TypeError(f"operation {op.name!r} returned {type(result).__name__}, not a mapping")
        except (AdminError, HttpError) as exc:
            self._record(op, "error", actor, client, rid, params, exc.message, exc.status, peer)
            return exc.status, {"error": exc.message, "request_id": rid}
        except Exception:
            log.exception("admin operation %r failed", op.name)
            self._record(op, "error", actor, client, rid, params, "internal error", 500, peer)
            return 500, {"error": "internal error", "request_id": rid}
        self._record(op, "ok", actor, client, rid, params, None, 200, peer)
        return 200, {"ok": True, "request_id": rid, **result}

    async def _authenticate(self, request: Request, client: ClientAddress, certificate: str | None, rid: str,
                            operation: str, peer: dict[str, int] | None) -> Actor | Response:
        assert self.auth is not None
        try:
            actor = await self.auth.authenticate(request.headers, client, certificate)
        except AuthFailure as exc:
            self.metrics.requests.admin_auth_failure(exc.reason)
            self._audit(operation, "refused", None, client, rid, None, exc.message, exc.status, peer)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            if exc.retry_after is not None:
                headers["Retry-After"] = str(max(1, round(exc.retry_after)))
            return Response.json(exc.status, {"error": exc.message, "request_id": rid}, **headers)
        if peer is not None:
            actor = Actor(actor.method, actor.name, actor.token_id, uid=peer["uid"], pid=peer["pid"])
        return actor

    def _record(self, op: AdminOperation, outcome: str, actor: Actor | None, client: ClientAddress, rid: str,
                params: Mapping[str, Any] | None, detail: str | None, status: int,
                peer: dict[str, int] | None) -> None:
        # Only parameters the operation declares go to the audit log (never a stray credential).
        safe = {k: v for k, v in (params or {}).items() if k in op.params}
        self._audit(op.name, outcome, actor, client, rid, safe, detail, status, peer)

    def _audit(self, operation: str, outcome: str, actor: Actor | None, client: ClientAddress, rid: str,
               params: Mapping[str, Any] | None, detail: str | None, status: int,
               peer: dict[str, int] | None) -> None:
        self.metrics.requests.admin_request(operation, outcome)
        self.audit.admin(operation=operation, outcome=outcome, actor=str(actor) if actor else None,
                         client=str(client), request_id=rid, params=dict(params or {}), detail=detail,
                         status=status, peer=peer)




_GUARD_HELP = (
    ("tracked", "Address buckets with recorded admin authentication failures (or bans)."),
    ("banned", "Address buckets banned for failed admin authentications."),
    ("backing_off", "Address buckets in exponential backoff after failed admin authentications."),
    ("untracked_failures", "Admin authentication failures not recorded: the guard's table was full."),
    ("refused_new_keys", "Admin requests from new addresses refused: the guard's table was full."),
)
ADMIN_FAMILIES = (
    *(MetricFamily(f"swqos_admin_bruteforce_{key}", "gauge", help_text) for key, help_text in _GUARD_HELP),
    MetricFamily("swqos_admin_connections", "gauge", "Admin connections open now."),
    MetricFamily("swqos_admin_connections_limit", "gauge", "Admin connections served at once (max_connections)."),
    MetricFamily("swqos_admin_known_traders", "gauge", "Traders seen authenticating, for the unknown-trader check."),
)


class AdminMetrics:
    """The admin listener's own state as a MetricsCollector."""

    families = ADMIN_FAMILIES

    def __init__(self, service: AdminService) -> None:
        self.service = service

    def collect(self) -> Iterable[Sample]:
        s = self.service
        if s.auth is not None:
            for key, value in s.auth.guard.snapshot().items():
                yield (f"swqos_admin_bruteforce_{key}", (), float(value))
        yield ("swqos_admin_connections", (), float(s._connections))
        yield ("swqos_admin_connections_limit", (), float(s.settings.max_connections))
        yield ("swqos_admin_known_traders", (), float(len(s.known)))


__all__ = ["AdminMetrics", "AdminService", "tls_context"]
