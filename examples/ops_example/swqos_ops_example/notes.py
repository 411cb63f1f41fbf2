"""The maintenance note: one short text, who set it, and how many times it was set."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from swqos_core.extensions import Actor, AdminError, AdminOperation, MetricFamily, Sample

MAX_NOTE = 200


class MaintenanceNote:
    """A service (nothing to start or stop) holding the note in memory, like every admin change: a
    restart forgets it. It is its own MetricsCollector."""

    families = (
        MetricFamily("swqos_example_maintenance_notes", "counter", "Maintenance notes set through the admin API."),
    )

    def __init__(self) -> None:
        self.text: str | None = None
        self.set_by: str | None = None
        self.set_at: float | None = None
        self.count = 0

    async def start(self, app: Any) -> None:
        return None

    async def close(self) -> None:
        return None

    # --- the admin operation ---------------------------------------------------------------
    async def set_note(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        text = params.get("text")
        if text is not None and (not isinstance(text, str) or not 0 < len(text) <= MAX_NOTE
                                 or not text.isprintable()):
            raise AdminError(400, f"'text' must be printable, 1 to {MAX_NOTE} characters, or null to clear")
        self.text, self.set_by, self.set_at = text, str(actor), time.time()
        self.count += 1
        return self.report()

    def operation(self) -> AdminOperation:
        return AdminOperation("set-maintenance-note", self.set_note, "set (or clear, with null) the note shown in "
                              "status", params={"text": "the note, or null to clear it"})

    # --- the metric (MetricsCollector) and the status section --------------------------------
    def collect(self) -> Iterable[Sample]:
        yield ("swqos_example_maintenance_notes", (), float(self.count))

    def report(self) -> Mapping[str, Any]:
        return {"note": self.text, "set_by": self.set_by, "set_at": self.set_at}
