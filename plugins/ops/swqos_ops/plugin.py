"""Hook implementations of swqos-ops: the ``admin`` and ``audit`` services, their observers,
metrics and operations, and ``swqos admin``."""

from __future__ import annotations

from swqos_core import hookimpl
from swqos_core.errors import ConfigError
from swqos_ops.audit import AuditMetrics, AuditService
from swqos_ops.auth import build_token_verifier
from swqos_ops.cli import add_commands
from swqos_ops.listener import AdminMetrics, AdminService
from swqos_ops.metrics import KernelMetrics
from swqos_ops.operations import OwnOperations
from swqos_ops.settings import AdminSettings, AuditSettings


def _services(app, cls):
    return [obj for _, obj in app.layers.get("service", []) if isinstance(obj, cls)]


@hookimpl
def swqos_register_services(register):
    """The admin listener and the audit log, selected with ``[pipeline] services``."""
    register("admin", lambda settings, ctx: AdminService(settings, ctx), AdminSettings,
             description="admin API, /metrics and /healthz on loopback, a 0600 Unix socket or mutual TLS")
    register("audit", lambda settings, ctx: AuditService(settings), AuditSettings,
             description="JSON-lines audit log of every decision and admin action (0600, follows logrotate)")


@hookimpl
def swqos_register_observers(app, register):
    """Request metrics and known traders (admin), one audit line per decision (audit)."""
    for admin in _services(app, AdminService):
        register("ops.request_metrics", admin.metrics.requests.observe)
        register("ops.known_traders", admin.known.observe)
    for audit in _services(app, AuditService):
        register("ops.audit", audit.log.decision)


@hookimpl
def swqos_register_metrics(app, register):
    """The kernel's state (``app.state``, ``app.enclave``), the admin listener's and the audit log's."""
    admins = _services(app, AdminService)
    if admins:
        register(KernelMetrics(app.state, app.enclave))
        register(AdminMetrics(admins[0]))
    for audit in _services(app, AuditService):
        register(AuditMetrics(audit.log))


@hookimpl
def swqos_register_admin_operations(app, register):
    """status, operations, trader, drain, undrain."""
    for admin in _services(app, AdminService):
        for operation in OwnOperations(app, admin).all():
            register(operation)


@hookimpl
def swqos_check_config(app, strict):
    """The admin token verifier: its registration exists and ``token_auth`` fits its settings."""
    problems = []
    for admin in _services(app, AdminService):
        try:
            build_token_verifier(admin.settings, app)
        except ConfigError as exc:
            problems += exc.problems
    return problems


@hookimpl
def swqos_add_commands(subparsers):
    add_commands(subparsers)
