"""auth_jwt's metrics: credential caches and brute-force guards of its ``jwt`` and ``api_token`` layers.

A :class:`~swqos_core.extensions.MetricsCollector` registered through ``swqos_register_metrics``;
read on the event loop when ``/metrics`` is scraped. Labelled by layer name (from the config).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from swqos_auth_jwt.api_tokens import ApiTokenAuthenticator
from swqos_auth_jwt.jwt_auth import JwtAuthenticator
from swqos_core.extensions import MetricFamily, Sample

Layer = JwtAuthenticator | ApiTokenAuthenticator

FAMILIES = (
    MetricFamily("swqos_auth_bruteforce_tracked", "gauge", "Address buckets with recorded authentication failures.",
                 ("layer",)),
    MetricFamily("swqos_auth_bruteforce_banned", "gauge", "Address buckets banned for failed authentications.",
                 ("layer",)),
    MetricFamily("swqos_auth_bruteforce_backing_off", "gauge", "Address buckets in exponential backoff.", ("layer",)),
    MetricFamily("swqos_auth_cache_entries", "gauge", "Verified credentials cached.", ("layer",)),
    MetricFamily("swqos_auth_cache_hits", "counter", "Credential cache hits.", ("layer",)),
    MetricFamily("swqos_auth_cache_misses", "counter", "Credential cache misses.", ("layer",)),
    MetricFamily("swqos_auth_api_token_verifications", "counter", "Argon2id verifications run.", ("layer",)),
    MetricFamily("swqos_auth_api_token_verify_queue", "gauge", "Argon2id verifications running or queued.",
                 ("layer",)),
    MetricFamily("swqos_auth_api_token_refused", "counter",
                 "API-token calls refused before Argon2id for load (RESOURCE_EXHAUSTED): queue_full, queue_wait, "
                 "token_id_throttled; cancelled: dropped from the queue by their deadline.", ("layer", "reason")),
)


class AuthMetrics:
    families = FAMILIES

    def __init__(self, layers: Sequence[tuple[str, Layer]]) -> None:
        self.layers = list(layers)

    def collect(self) -> Iterable[Sample]:
        for name, layer in self.layers:
            snap = layer.guard.snapshot()
            yield ("swqos_auth_bruteforce_tracked", (name,), float(snap.get("tracked", 0)))
            yield ("swqos_auth_bruteforce_banned", (name,), float(snap.get("banned", 0)))
            yield ("swqos_auth_bruteforce_backing_off", (name,), float(snap.get("backing_off", 0)))
            yield ("swqos_auth_cache_entries", (name,), float(len(layer.cache)))
            yield ("swqos_auth_cache_hits", (name,), float(layer.cache.hits))
            yield ("swqos_auth_cache_misses", (name,), float(layer.cache.misses))
            if isinstance(layer, ApiTokenAuthenticator):
                c = layer.counters()
                yield ("swqos_auth_api_token_verifications", (name,), float(c["runs"]))
                yield ("swqos_auth_api_token_verify_queue", (name,), float(c["pending"]))
                for reason, key in (("queue_full", "refused_queue_full"), ("queue_wait", "refused_wait"),
                                    ("token_id_throttled", "refused_id_throttled"), ("cancelled", "cancelled")):
                    yield ("swqos_auth_api_token_refused", (name, reason), float(c[key]))


def collector_for(app) -> AuthMetrics | None:
    layers = [(name, obj) for name, obj in app.layers.get("auth", [])
              if isinstance(obj, (JwtAuthenticator, ApiTokenAuthenticator))]
    return AuthMetrics(layers) if layers else None
