"""The dashboard: four server-rendered pages, a JSON feed for the live charts, and one form target.

HTTP-framework-free: the admin listener hands each request under its mount point to
:meth:`Dashboard.handle` after it has authenticated the operator, and writes the reply back. Every
state-changing form posts to ``<prefix>/action`` and runs a registered admin operation *through
the listener* (:class:`OperationsHost`), so it gets the listener's parameter and subject checks and
its audit line naming the operator, exactly like ``swqos admin``.
"""

from __future__ import annotations

import collections
import importlib.resources
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import jinja2

from swqos_core.extensions import Actor, AdminError, AdminOperation, Decision
from swqos_dashboard import views, web
from swqos_dashboard.csrf import CsrfGuard, CsrfRefused, new_session, valid_session
from swqos_dashboard.forms import operation_params
from swqos_dashboard.recent import RecentDecisions, Reconcile, Subjects
from swqos_dashboard.settings import DashboardSettings
from swqos_dashboard.traffic import TrafficRing
from swqos_dashboard.web import BadRequest, Reply

log = logging.getLogger("swqos.dashboard")

PAGES = ("overview", "traffic", "traders", "audit")
STATIC = {"dashboard.css": "text/css; charset=utf-8", "charts.js": "text/javascript; charset=utf-8"}
#: Operations the Traders and Overview pages lay out themselves; every other mutating one gets a generic form.
LAID_OUT = frozenset({"revoke-trader", "restore-trader", "set-allowlist", "set-quota", "clear-quota",
                      "revoke-token", "restore-token", "drain", "undrain", "revoke-api-token"})
#: Status sections the Overview lays out itself; every other section is shown as a table.
OVERVIEW_SECTIONS = frozenset({"kill_switch", "release_check", "cdn", "store"})
OUTCOME = re.compile(r"[A-Z_]{1,40}")
FLASH_MAX = 1000


@runtime_checkable
class OperationsHost(Protocol):
    """What the admin listener offers a mounted page: its operations, run and audited as the API runs them."""

    async def invoke(self, name: str, params: Mapping[str, Any], actor: Actor) -> tuple[int, Mapping[str, Any]]:
        """Run operation ``name`` for ``actor`` with the listener's checks; (HTTP status, JSON body)."""
        ...

    def audit(self, operation: str, outcome: str, actor: Actor | None, detail: str | None, status: int) -> None:
        """Write one admin audit line (a refused form, say)."""
        ...


def _fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + " UTC"


def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


class Dashboard:
    """The pages and their in-memory, bounded view of traffic (a decision observer)."""

    def __init__(self, settings: DashboardSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.traffic = TrafficRing(settings.traffic_seconds, clock)
        self.recent = RecentDecisions(settings.recent_decisions, clock)
        self.subjects = Subjects(settings.subjects_max, clock)
        self.reconcile = Reconcile()
        self.csrf = CsrfGuard(settings.csrf_max_age_seconds, settings.csrf_used_max, clock)
        self.app: Any = None
        self.host: OperationsHost | None = None
        self.prefix = "/ui"
        self.started = time.monotonic()
        self.flash: collections.OrderedDict[str, tuple[bool, str]] = collections.OrderedDict()
        self.forms_refused = 0
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("swqos_dashboard", "templates"),
            autoescape=True,  # every template is HTML
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["when"] = _fmt_time
        self.env.filters["quota"] = views.quota_text
        root = importlib.resources.files("swqos_dashboard") / "static"
        self.static = {name: (root / name).read_bytes() for name in STATIC}

    # --- wiring ----------------------------------------------------------------------------
    def bind(self, app: Any) -> None:
        """The running app: state, enclave view, contributions."""
        self.app = app
        self.started = time.monotonic()
        self.reconcile.bind(app.state)

    def mount(self, prefix: str, host: OperationsHost) -> None:
        """Called by the admin listener that serves the pages under ``prefix``."""
        if not isinstance(host, OperationsHost):
            raise TypeError(f"{type(host).__name__} is not an OperationsHost")
        self.prefix = prefix.rstrip("/")
        self.host = host

    def observe(self, d: Decision) -> None:
        """The decision observer: every view's ring is fed from here."""
        self.traffic.observe(d)
        self.recent.observe(d)
        self.subjects.observe(d)
        self.reconcile.observe(d)

    @property
    def operations(self) -> Mapping[str, tuple[str, AdminOperation]]:
        return self.app.contributions.admin_operations if self.app is not None else {}

    # --- requests --------------------------------------------------------------------------
    async def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
                     actor: Actor) -> Reply:
        """Answer one request for ``path`` (under the mount prefix) by the authenticated ``actor``.

        ``headers`` have lower-case names. Bad input gets a 4xx and changes nothing; an unexpected
        error gets a 500 and changes nothing further.
        """
        try:
            return await self._route(method, path, query, headers, body, actor)
        except BadRequest as exc:
            return web.text(exc.status, exc.message)
        except Exception:
            log.exception("dashboard request %s %s failed", method, path[:80])
            return web.text(500, "internal error (see the proxy log)")

    async def _route(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
                     actor: Actor) -> Reply:
        if self.app is None:
            return web.text(503, "the dashboard is not started")
        if len(query) > self.settings.max_query_bytes:
            raise BadRequest(414, "query string too long")
        if len(body) > self.settings.max_body_bytes:
            raise BadRequest(413, f"request body over {self.settings.max_body_bytes} bytes")
        if not path.startswith(self.prefix):
            raise BadRequest(404, "not a dashboard path")
        rel = path[len(self.prefix):]
        allowed = "POST" if rel == "/action" else "GET"
        if method != allowed:
            return web.text(405, f"use {allowed}", ("Allow", allowed))
        if rel in ("", "/"):
            return web.redirect(f"{self.prefix}/overview")
        if rel.startswith("/static/"):
            name = rel[len("/static/"):]
            if name not in STATIC:
                raise BadRequest(404, "no such asset")
            return web.reply(200, self.static[name], STATIC[name])
        if rel == "/traffic.json":
            q = web.parse_pairs(query, "query")
            return web.json_reply(200, self.traffic.series(_int(q, "window", 3600), _int(q, "step", 10)))
        if rel == "/action":
            return await self._action(headers, body, actor)
        page = rel.lstrip("/")
        if page not in PAGES:
            raise BadRequest(404, "no such page")
        q = web.parse_pairs(query, "query")
        session = web.cookie(headers, web.SESSION_COOKIE)
        extra: list[tuple[str, str]] = []
        if not valid_session(session):
            session = new_session()
            extra.append(web.session_cookie(session, self.prefix))
        assert session is not None
        context = await getattr(self, f"_page_{page}")(q)
        context.update(self._common(page, session, actor))
        return web.html(200, self.env.get_template(f"{page}.html").render(**context), *extra)

    def _common(self, page: str, session: str, actor: Actor) -> dict[str, Any]:
        flash = self.flash.pop(session, None)
        return {"page": page, "pages": PAGES, "prefix": self.prefix, "actor": str(actor),
                "csrf": self.csrf.issue(session, str(actor)), "flash": flash,
                "has": lambda name: name in self.operations}

    # --- pages -----------------------------------------------------------------------------
    async def _page_overview(self, q: Mapping[str, str]) -> dict[str, Any]:
        app = self.app
        st = app.state
        sections = views.status_sections(app)
        return {
            "serving": st.serving,
            "not_serving_reason": st.not_serving_reason(),
            "halted": st.halted,
            "halt_reasons": st.halt_reasons,
            "draining": st.draining,
            "release": st.release_version,
            "enclave": await views.enclave_now(app),
            "kill_switch": views.kill_switch(sections),
            "release_check": sections.get("release_check"),
            "cdn": sections.get("cdn"),
            "store": [name for name, _ in app.layers.get("store", [])],
            "store_status": sections.get("store"),
            "sections": {k: v for k, v in sections.items() if k not in OVERVIEW_SECTIONS},
            "uptime": _fmt_duration(time.monotonic() - self.started),
            "plugins": [(p.name, p.distribution, p.version) for p in app.plugins],
        }

    async def _page_traffic(self, q: Mapping[str, str]) -> dict[str, Any]:
        return {"series": self.traffic.series(3600, 10), "poll_seconds": self.settings.poll_seconds}

    async def _page_traders(self, q: Mapping[str, str]) -> dict[str, Any]:
        pol = views.policies(self.operations)
        rows = [{"sub": sub, "usage": usage, **views.describe_subject(sub, pol)}
                for sub, usage in self.subjects.recent(self.settings.subjects_shown)]
        lookup = _subject(q.get("sub"))
        others = [op for name, (_, op) in sorted(self.operations.items()) if op.mutating and name not in LAID_OUT]
        return {"rows": rows, "tracked": len(self.subjects.table), "evicted": self.subjects.evicted,
                "lookup": lookup, "lookup_view": views.describe_subject(lookup, pol) if lookup else None,
                "others": others, "api_tokens": await self._api_tokens()}

    async def _api_tokens(self) -> list[Mapping[str, Any]] | None:
        """The API tokens, from the read-only ``api-tokens`` operation if a plugin offers it."""
        entry = self.operations.get("api-tokens")
        if entry is None or entry[1].mutating:
            return None
        try:
            listing = await entry[1].handler({}, Actor("dashboard", "page-view"))
        except AdminError as exc:
            log.warning("api-tokens: %s", exc.message)
            return None
        return list(listing.get("tokens", []))[: self.settings.subjects_shown]

    async def _page_audit(self, q: Mapping[str, str]) -> dict[str, Any]:
        subject = _subject(q.get("sub"))
        outcome = q.get("outcome") or None
        if outcome is not None and outcome != "refused" and not OUTCOME.fullmatch(outcome):
            raise BadRequest(400, "outcome must be OK, refused or a gRPC status name")
        enclave = await views.enclave_now(self.app)
        return {"rows": self.recent.filtered(subject, outcome), "kept": len(self.recent.ring),
                "dropped": self.recent.dropped, "sub": subject or "", "outcome": outcome or "",
                "reconcile": self.reconcile.report(enclave["signatures"]), "enclave": enclave}

    # --- the one form target ---------------------------------------------------------------
    async def _action(self, headers: Mapping[str, str], body: bytes, actor: Actor) -> Reply:
        form = web.parse_form(headers, body)
        name = form.get("op", "")
        entry = self.operations.get(name)
        label = f"ui:{name}" if entry is not None else "ui:unknown-operation"
        session = web.cookie(headers, web.SESSION_COOKIE)
        try:
            if not web.same_origin(headers):
                raise CsrfRefused("form posted from another site")
            self.csrf.check(session, form.get("csrf"), str(actor))
        except CsrfRefused as exc:
            self.forms_refused += 1
            self._audit_refusal(label, actor, exc.reason, exc.status)
            return web.text(exc.status, f"form refused: {exc.reason}")
        back = form.get("back", "overview")
        back = back if back in PAGES else "overview"
        if entry is None or not entry[1].mutating:
            raise BadRequest(404, "no such operation to run from a form")
        op = entry[1]
        params = operation_params(op, form)
        if self.host is None:
            return web.text(503, "the dashboard is not mounted on an admin listener")
        status, result = await self.host.invoke(op.name, params, actor)
        if status == 200:
            message = (True, f"{op.name}: done")
        else:
            message = (False, f"{op.name} refused ({status}): {str(result.get('error', ''))[:300]}")
        assert session is not None
        self.flash[session] = message
        self.flash.move_to_end(session)
        while len(self.flash) > FLASH_MAX:
            self.flash.popitem(last=False)
        return web.redirect(f"{self.prefix}/{back}")

    def _audit_refusal(self, operation: str, actor: Actor, detail: str, status: int) -> None:
        if self.host is not None:
            self.host.audit(operation, "refused", actor, detail, status)
        else:
            log.warning("dashboard form refused: %s by %s (%s)", operation, actor, detail)


def _int(q: Mapping[str, str], key: str, default: int) -> int:
    value = q.get(key)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 6:
        raise BadRequest(400, f"{key} must be a positive integer")
    return max(1, int(value))


def _subject(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) > 256 or not value.isprintable():
        raise BadRequest(400, "sub must be a printable string of at most 256 characters")
    return value
