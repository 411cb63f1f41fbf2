"""The ``kill_switch`` section of the operator's status view (``/v1/status``, the dashboard)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swqos_killswitch.sources import PollingSource


class KillSwitchStatus:
    """One entry per revocation source: manifest version, halt, staleness, last success, the trust
    (key or root, thresholds), who signed, and a lift held by its timelock."""

    def __init__(self, sources: Sequence[tuple[str, PollingSource]]) -> None:
        self.sources = list(sources)

    def __call__(self) -> Mapping[str, Any]:
        out: dict[str, Any] = {}
        for name, source in self.sources:
            snap = source.snapshot()
            out[name] = {
                "manifest_version": snap["manifest_version"],
                "manifest_age_seconds": snap["manifest_age_seconds"],
                "manifest_expires_in_seconds": snap["manifest_expires_in_seconds"],
                "halted": snap["halted"],
                "halt_reason": snap["halt_reason"],
                "stale": snap["stale"],
                "stale_reason": snap["stale_reason"],
                "last_success_unix": snap["last_success_unix"],
                "consecutive_failures": snap["consecutive_failures"],
                "rejected_total": snap["rejected_total"],
                "fetch_failures_total": snap["fetch_failures_total"],
                "ignored_signatures_total": snap["ignored_signatures_total"],
                "trust": snap["trust"],
                "signed_by": snap["signed_by"],
                "last_verification": snap["last_verification"],
                "pending_lift": snap["pending_lift"],
            }
        return out
