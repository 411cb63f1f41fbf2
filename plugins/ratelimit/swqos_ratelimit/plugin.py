"""Hook implementations of swqos-ratelimit."""

from swqos_core import hookimpl
from swqos_ratelimit.limiter import build
from swqos_ratelimit.settings import GcraSettings


@hookimpl
def swqos_register_rate_limiters(register):
    register("gcra", build, GcraSettings,
             description="GCRA per address (+ handshakes/min) before auth, per trader (+ sustained) after")
