"""Serving the dashboard on swqos-ops' admin listener (its route registry, ``AdminService.mount``).

The listener authenticates the operator before a request reaches the pages (a verified client
certificate, or whatever else its settings accept) and adds ``Cache-Control: no-store`` and
``X-Content-Type-Options: nosniff`` to every response itself; the pages add the rest of their
headers. Operations run through :class:`swqos_ops.pages.PageHost`, i.e. the listener's own checks
and audit.
"""

from __future__ import annotations

from swqos_core.extensions import Actor
from swqos_dashboard.dashboard import Dashboard
from swqos_ops.http import Request, Response
from swqos_ops.listener import AdminService
from swqos_ops.pages import PageHost

PREFIX = "/ui"
#: Headers the listener writes itself (one of each per response).
LISTENER_HEADERS = frozenset({"content-type", "content-length", "connection", "cache-control",
                              "x-content-type-options"})


def mount(admin: AdminService, dashboard: Dashboard) -> None:
    """Serve ``dashboard`` under ``/ui/`` on ``admin``, behind its authentication."""
    dashboard.mount(PREFIX, PageHost(admin))

    async def route(request: Request, actor: Actor) -> Response:
        status, headers, body = await dashboard.handle(request.method, request.path, request.query,
                                                       request.headers, request.body, actor)
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "text/plain; charset=utf-8")
        return Response(status, body, content_type,
                        {k: v for k, v in headers if k.lower() not in LISTENER_HEADERS})

    admin.mount(PREFIX + "/", route)
