"""Hook implementations of swqos-ratelimit."""

from swqos_core import hookimpl
from swqos_ratelimit.admin_ops import operations_for
from swqos_ratelimit.limiter import build
from swqos_ratelimit.metrics import collector_for
from swqos_ratelimit.settings import GcraSettings


@hookimpl
def swqos_register_rate_limiters(register):
    register("gcra", build, GcraSettings,
             description="GCRA per address (+ handshakes/min) before auth, per trader (+ sustained) after")


@hookimpl
def swqos_register_admin_operations(app, register):
    """set-quota and clear-quota (for the gcra layers)."""
    for operation in operations_for(app):
        register(operation)


@hookimpl
def swqos_register_metrics(app, register):
    """``swqos_ratelimit_*``: table sizes, evictions, admissions and refusals of the gcra layers."""
    collector = collector_for(app)
    if collector is not None:
        register(collector)


@hookimpl(optionalhook=True)  # a swqos-dev hook: absent where swqos-dev is not installed
def swqos_dev_defaults(dev_dir):
    from swqos_ratelimit.dev import dev_defaults  # imports swqos_dev, which is the only caller

    return dev_defaults(dev_dir)
