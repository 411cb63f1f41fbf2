"""Hook implementations of swqos-dashboard: the ``dashboard`` service, its decision observer, and
its pages on the admin listener (``/ui/``)."""

from __future__ import annotations

from swqos_core import hookimpl
from swqos_core.errors import ConfigError
from swqos_dashboard.mount import mount
from swqos_dashboard.service import DashboardService
from swqos_dashboard.settings import DashboardSettings
from swqos_ops.listener import AdminService


def _dashboards(app):
    return [obj for _, obj in app.layers.get("service", []) if isinstance(obj, DashboardService)]


@hookimpl
def swqos_register_services(register):
    """The dashboard, selected with ``[pipeline] services = [..., "dashboard"]`` next to ``admin``."""
    register("dashboard", lambda settings, ctx: DashboardService(settings), DashboardSettings,
             description="validator dashboard pages under /ui/ on the admin listener (mutual TLS or local socket)")


@hookimpl
def swqos_register_observers(app, register):
    """Per-second traffic buckets, recent decisions, traders seen, signatures returned (all bounded).

    Also mounts the pages on the admin listener (``/ui/``), before it starts: a contribution hook is
    where the built services meet. Without the ``admin`` service there is nothing to mount on, and
    startup says so.
    """
    dashboards = _dashboards(app)
    if not dashboards:
        return
    admins = [obj for _, obj in app.layers.get("service", []) if isinstance(obj, AdminService)]
    if not admins:
        raise ConfigError("[pipeline] services: 'dashboard' is served by the admin listener; add 'admin' "
                          "(swqos-ops) to [pipeline] services")
    for service in dashboards:
        service.dashboard.bind(app)
        mount(admins[0], service.dashboard)
        register("dashboard.traffic", service.dashboard.observe)

