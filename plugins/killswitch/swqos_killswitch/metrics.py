"""The kill switch's metrics: one :class:`~swqos_core.extensions.MetricsCollector` over its sources.

Names and labels are the ones docs/operations.md lists (``swqos_kill_switch_*``, label ``source``
= the layer name from the operator's config, ``reason`` = a refusal or fetch-failure label, which
this package's code picks from closed sets; a fetched document never names a label). Read on the
event loop when ``/metrics`` is scraped, straight from each source's :class:`KillSwitch` snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from swqos_core.extensions import MetricFamily, Sample
from swqos_killswitch.sources import PollingSource

FAMILIES = (
    MetricFamily("swqos_kill_switch_manifest_version", "gauge",
                 "Version of the last accepted revocation manifest.", ("source",)),
    MetricFamily("swqos_kill_switch_manifest_age_seconds", "gauge",
                 "Seconds since the accepted manifest was issued.", ("source",)),
    MetricFamily("swqos_kill_switch_halted", "gauge", "1 while this revocation source holds a halt.", ("source",)),
    MetricFamily("swqos_kill_switch_stale", "gauge", "1 while this source holds no usable manifest.", ("source",)),
    MetricFamily("swqos_kill_switch_polls", "counter", "Manifest polls.", ("source",)),
    MetricFamily("swqos_kill_switch_consecutive_failures", "gauge", "Polls in a row without a valid manifest.",
                 ("source",)),
    MetricFamily("swqos_kill_switch_rejected", "counter", "Manifests refused (bad signature, rollback, ...).",
                 ("source", "reason")),
    MetricFamily("swqos_kill_switch_fetch_failures", "counter", "Manifest fetches that failed.", ("source", "reason")),
    MetricFamily("swqos_kill_switch_last_success_timestamp_seconds", "gauge", "Unix time of the last valid poll.",
                 ("source",)),
    MetricFamily("swqos_kill_switch_ignored_signatures", "counter",
                 "Manifest signatures that did not count (duplicate_signer, unknown_key, rotated_out_key, ...).",
                 ("source", "reason")),
    MetricFamily("swqos_kill_switch_manifest_signers", "gauge",
                 "Distinct trusted keys that signed the accepted manifest.", ("source",)),
    MetricFamily("swqos_kill_switch_lift_pending", "gauge",
                 "1 while a valid lift waits for its not_before (the timelock); the halt still holds.", ("source",)),
    MetricFamily("swqos_kill_switch_lift_timelock_seconds", "gauge",
                 "Seconds until the pending lift takes effect (only while one is pending).", ("source",)),
    MetricFamily("swqos_kill_switch_root_version", "gauge", "Version of the trusted root (threshold trust only).",
                 ("source",)),
)


class KillSwitchMetrics:
    """Samples for every revocation source this plugin built (``source`` = its config name)."""

    families = FAMILIES

    def __init__(self, sources: Sequence[tuple[str, PollingSource]]) -> None:
        self.sources = list(sources)

    def collect(self) -> Iterable[Sample]:
        for name, source in self.sources:
            snap = source.snapshot()
            src = (name,)
            if snap["manifest_version"] is not None:
                yield "swqos_kill_switch_manifest_version", src, snap["manifest_version"]
            if snap["manifest_age_seconds"] is not None:
                yield "swqos_kill_switch_manifest_age_seconds", src, snap["manifest_age_seconds"]
            yield "swqos_kill_switch_halted", src, 1 if snap["halted"] else 0
            yield "swqos_kill_switch_stale", src, 1 if snap["stale"] else 0
            yield "swqos_kill_switch_polls", src, snap["polls_total"]
            yield "swqos_kill_switch_consecutive_failures", src, snap["consecutive_failures"]
            for reason, n in sorted(snap["rejected_total"].items()):
                yield "swqos_kill_switch_rejected", (name, reason), n
            for reason, n in sorted(snap["fetch_failures_total"].items()):
                yield "swqos_kill_switch_fetch_failures", (name, reason), n
            if snap["last_success_unix"] is not None:
                yield "swqos_kill_switch_last_success_timestamp_seconds", src, snap["last_success_unix"]
            for reason, n in sorted(snap["ignored_signatures_total"].items()):
                yield "swqos_kill_switch_ignored_signatures", (name, reason), n
            if snap["manifest_version"] is not None:
                yield "swqos_kill_switch_manifest_signers", src, len(snap["signed_by"])
            pending = snap["pending_lift"]
            yield "swqos_kill_switch_lift_pending", src, 0 if pending is None else 1
            if pending is not None:
                yield "swqos_kill_switch_lift_timelock_seconds", src, pending["seconds_left"]
            if snap["trust"].get("mode") == "root":
                yield "swqos_kill_switch_root_version", src, snap["trust"]["version"]
