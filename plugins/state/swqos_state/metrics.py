"""The store's metrics and status section: reachability, sync failures, mirrored bans, records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from swqos_core.extensions import MetricFamily, Sample
from swqos_core.store import StateStore
from swqos_state.sync import StoreSync

FAMILIES = (
    MetricFamily("swqos_state_store_available", "gauge", "1 when the state store answers, 0 while it does not.",
                 ("store",)),
    MetricFamily("swqos_state_store_sync_failures", "counter", "Polls or writes of the state store that failed.",
                 ("store",)),
    MetricFamily("swqos_state_store_mirrored_bans", "gauge", "Bans from the state store mirrored in this process.",
                 ("store",)),
    MetricFamily("swqos_state_store_policy_records", "gauge", "Policy records (admin changes) applied here.",
                 ("store",)),
    MetricFamily("swqos_state_store_dropped", "counter",
                 "Failures not queued and bans not mirrored because their bound was reached.", ("store", "what")),
    MetricFamily("swqos_state_store_busy_refusals", "counter",
                 "Rate-limit takes failed at once because max_in_flight commands were already waiting for the "
                 "store (the limiter then used this replica's share).", ("store",)),
)


class StoreCollector:
    """A :class:`~swqos_core.extensions.MetricsCollector` over the selected store."""

    families = FAMILIES

    def __init__(self, store: StoreSync) -> None:
        self.store = store

    def collect(self) -> Iterable[Sample]:
        st = self.store.status()
        name = (st.name,)
        yield "swqos_state_store_available", name, 1.0 if st.available else 0.0
        yield "swqos_state_store_sync_failures", name, float(st.sync_failures)
        yield "swqos_state_store_mirrored_bans", name, float(st.mirror_bans)
        yield "swqos_state_store_policy_records", name, float(st.policy_records)
        yield "swqos_state_store_dropped", (st.name, "failures"), float(self.store.dropped_failures)
        yield "swqos_state_store_dropped", (st.name, "bans"), float(self.store.dropped_bans)
        yield "swqos_state_store_busy_refusals", name, float(self.store.busy_refusals())


def status_of(store: StateStore) -> Mapping[str, Any]:
    st = store.status()
    return {"store": st.name, "available": st.available, "detail": st.detail, "degraded": st.degraded,
            "sync_failures": st.sync_failures, "mirrored_bans": st.mirror_bans, "policy_records": st.policy_records}
