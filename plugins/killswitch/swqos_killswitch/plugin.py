"""Hook implementations of swqos-killswitch."""

from __future__ import annotations

from swqos_core import hookimpl
from swqos_killswitch import cli, release
from swqos_killswitch.admin import poll_operation
from swqos_killswitch.metrics import KillSwitchMetrics
from swqos_killswitch.release_check import ReleaseCheck, ReleaseCheckSettings, build_release_check
from swqos_killswitch.sources import (
    FileSourceSettings,
    HttpsSourceSettings,
    PollingSource,
    build_file_source,
    build_https_source,
)
from swqos_killswitch.status import KillSwitchStatus


def _sources(app):
    return [(name, obj) for name, obj in app.layers.get("revocation", []) if isinstance(obj, PollingSource)]


@hookimpl
def swqos_register_revocation_sources(register):
    """The ``https`` and ``file`` sources of the signed revocation manifest."""
    register("https", build_https_source, HttpsSourceSettings,
             description="signed revocation manifest polled over HTTPS (kill switch)")
    register("file", build_file_source, FileSourceSettings,
             description="signed revocation manifest read from a local file (air-gapped, tests)")


@hookimpl
def swqos_register_services(register):
    """``release_check``: refuse to start unless the installed files match the signed release manifest."""
    register("release_check", build_release_check, ReleaseCheckSettings,
             description="installed swqos files checked against a signed release manifest at start")


@hookimpl
def swqos_register_metrics(app, register):
    """``swqos_kill_switch_*`` for each revocation source this plugin built."""
    sources = _sources(app)
    if sources:
        register(KillSwitchMetrics(sources))


@hookimpl
def swqos_register_admin_operations(app, register):
    """``kill-switch-poll``: poll every (or one) revocation source now."""
    sources = _sources(app)
    if sources:
        register(poll_operation(sources))


@hookimpl
def swqos_register_status(app, register):
    """``kill_switch`` (per source) and ``release_check`` sections of the status view."""
    sources = _sources(app)
    if sources:
        register("kill_switch", KillSwitchStatus(sources))
    checks = [obj for _, obj in app.layers.get("service", []) if isinstance(obj, ReleaseCheck)]
    if checks:
        register("release_check", checks[0].report)


@hookimpl
def swqos_add_commands(subparsers):
    """``swqos manifest ...``, ``swqos verify-release``, ``swqos release ...``."""
    cli.add_commands(subparsers)
    release.add_commands(subparsers)
