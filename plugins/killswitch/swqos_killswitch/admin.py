"""The kill switch's admin operation: ``kill-switch-poll``, fetch the manifest now instead of at the
next poll interval (after publishing a halt, or to see a rotation at once)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swqos_core.extensions import Actor, AdminError, AdminOperation
from swqos_killswitch.sources import PollingSource


def poll_operation(sources: Sequence[tuple[str, PollingSource]]) -> AdminOperation:
    by_name = dict(sources)

    async def handler(params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        unknown = set(params) - {"source"}
        if unknown:
            raise AdminError(400, f"unknown parameter(s): {', '.join(sorted(unknown))}")
        name = params.get("source")
        if name is not None and (not isinstance(name, str) or name not in by_name):
            raise AdminError(404, f"no revocation source named {name!r} (sources: {', '.join(sorted(by_name))})")
        chosen = [name] if name is not None else sorted(by_name)
        for n in chosen:
            # Wakes the background poller; it never lifts a halt by itself, so asking is harmless.
            by_name[n].poll_now()
        return {"polling": chosen}

    return AdminOperation(
        name="kill-switch-poll",
        handler=handler,
        description="fetch the revocation manifest (and any new trust root) now",
        mutating=True,
        params={"source": "one revocation source by name (default: every source)"},
    )
