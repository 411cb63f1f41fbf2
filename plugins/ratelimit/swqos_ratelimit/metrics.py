"""ratelimit's metrics (``swqos_ratelimit_*``): table sizes, evictions, admissions and refusals.

A :class:`~swqos_core.extensions.MetricsCollector` registered through ``swqos_register_metrics``,
read from :meth:`GcraRateLimiter.stats` on the event loop when ``/metrics`` is scraped. Labels are
the layer name (from the config), table, limit and check names (a closed set); never a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from swqos_core.extensions import MetricFamily, Sample
from swqos_ratelimit.limiter import GcraRateLimiter

FAMILIES = (
    MetricFamily("swqos_ratelimit_tracked_keys", "gauge", "Keys held by each limiter table.", ("layer", "table")),
    MetricFamily("swqos_ratelimit_table_capacity", "gauge", "Capacity of each limiter table.", ("layer", "table")),
    MetricFamily("swqos_ratelimit_evicted", "counter", "Keys evicted from a full table.", ("layer", "table")),
    MetricFamily("swqos_ratelimit_refused", "counter", "Refusals by limit (the layer's own count).",
                 ("layer", "limit")),
    MetricFamily("swqos_ratelimit_admitted", "counter", "Admissions by check (address or principal).",
                 ("layer", "check")),
    MetricFamily("swqos_ratelimit_store_fallbacks", "counter",
                 "Calls limited by this replica's own tables at the per-replica share because the state store "
                 "failed.", ("layer",)),
    MetricFamily("swqos_ratelimit_trader_overrides", "gauge", "Per-trader quota overrides, by source.",
                 ("layer", "source")),
)


class RateLimitMetrics:
    families = FAMILIES

    def __init__(self, layers: Sequence[tuple[str, GcraRateLimiter]]) -> None:
        self.layers = list(layers)

    def collect(self) -> Iterable[Sample]:
        for name, layer in self.layers:
            stats: dict[str, Any] = layer.stats()
            for table, entry in stats.get("tables", {}).items():
                yield ("swqos_ratelimit_tracked_keys", (name, str(table)), float(entry.get("tracked", 0)))
                if "cap" in entry:
                    yield ("swqos_ratelimit_table_capacity", (name, str(table)), float(entry["cap"]))
                if "evicted" in entry:
                    yield ("swqos_ratelimit_evicted", (name, str(table)), float(entry["evicted"]))
            for limit, n in stats.get("refused", {}).items():
                yield ("swqos_ratelimit_refused", (name, str(limit)), float(n))
            for check, n in stats.get("admitted", {}).items():
                yield ("swqos_ratelimit_admitted", (name, str(check)), float(n))
            yield ("swqos_ratelimit_store_fallbacks", (name,), float(stats.get("store_fallbacks", 0)))
            overrides = stats.get("overrides", {})
            for source in ("traders_config", "traders_runtime"):
                if source in overrides:
                    yield ("swqos_ratelimit_trader_overrides", (name, source.removeprefix("traders_")),
                           float(overrides[source]))


def collector_for(app: Any) -> RateLimitMetrics | None:
    layers = [(name, obj) for name, obj in app.layers.get("rate_limit", []) if isinstance(obj, GcraRateLimiter)]
    return RateLimitMetrics(layers) if layers else None
