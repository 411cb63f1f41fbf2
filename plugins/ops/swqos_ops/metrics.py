"""Prometheus metrics of one host-proxy, served on the admin listener (``GET /metrics``).

One :class:`~prometheus_client.CollectorRegistry` per app, no global state: tests build several
apps in one process. Three sources:

* request metrics (:class:`RequestMetrics`), a decision observer updated on every decision: plain
  integers and bucket counts on the hot path (a dict update and a C ``bisect`` per histogram, no
  lock, no prometheus_client object), turned into metric families only when scraped;
* the kernel's state (:class:`KernelMetrics`: ``app.state`` and ``app.enclave``), a
  :class:`~swqos_core.extensions.MetricsCollector` registered by this plugin like any other;
* every collector in ``app.contributions.metrics`` (each plugin exports its own), rendered through
  one prometheus_client custom collector.

Collectors are read on the event loop (layers are not thread-safe) into plain metric families;
only the text formatting runs in a thread, so a scrape costs the signing path a few tens of
microseconds of loop time.

Every label value is bounded: RPC, status and stage names come from closed sets, refusal labels
and plugins' label values must look like identifiers and are capped per dimension (anything else
becomes ``other``). A trader-controlled string (``sub``, an address, a reason) is never a label.
docs/operations.md lists every name and label.
"""

from __future__ import annotations

import asyncio
import logging
import re
from bisect import bisect_left
from collections.abc import Iterable

import grpc
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from swqos_core.extensions import Decision, EnclaveView, MetricFamily, MetricsCollector, Sample
from swqos_core.identity import to_base58
from swqos_core.pipeline import ENCLAVE_STAGES, STAGE_NAMES
from swqos_core.state import ServiceState

log = logging.getLogger("swqos.metrics")

#: Sub-millisecond to the 100 ms deadline, and a little past it.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
RPCS = frozenset({"SignCertificateVerify", "GetIdentity"})
OUTCOMES = frozenset({"OK"} | {c.name for c in grpc.StatusCode})
KNOWN_STAGES = frozenset(STAGE_NAMES) | frozenset(ENCLAVE_STAGES) | {"deadline"}
#: A label value is used only if it looks like an identifier ...
LABEL_RE = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,47}")
#: ... and only the first this many distinct values per dimension; later ones count as "other".
MAX_LABELS_PER_DIMENSION = 64
OTHER = "other"


class BoundedLabels:
    """Admit label values that look like identifiers, at most ``cap`` per dimension."""

    def __init__(self, cap: int = MAX_LABELS_PER_DIMENSION) -> None:
        self.cap = cap
        self._seen: dict[str, set[str]] = {}

    def __call__(self, dimension: str, value: str | None) -> str:
        if not value or not LABEL_RE.fullmatch(value):
            return OTHER
        seen = self._seen.setdefault(dimension, set())
        if value in seen:
            return value
        if len(seen) >= self.cap:
            return OTHER
        seen.add(value)
        return value


def _rpc(value: str) -> str:
    return value if value in RPCS else OTHER


def _stage(value: str | None) -> str:
    return value if value in KNOWN_STAGES else OTHER


#: Bucket bounds as the exposition spells them (``le``), cumulative counts end with ``+Inf``.
_LE = (*(floatToGoString(b) for b in LATENCY_BUCKETS), "+Inf")
_NB = len(LATENCY_BUCKETS)


def _new_hist() -> list[float]:
    """Per-bucket counts (not cumulative), the +Inf bucket, then the sum: one flat list."""
    return [0] * (_NB + 1) + [0.0]  # type: ignore[return-value]


def _histogram(name: str, help_text: str, labels: list[str], series: dict[tuple[str, ...], list[float]]) -> Metric:
    fam = HistogramMetricFamily(name, help_text, labels=labels)
    for key, h in sorted(series.items()):
        cum, buckets = 0, []
        for le, n in zip(_LE, h[:-1], strict=True):
            cum += int(n)
            buckets.append((le, cum))
        fam.add_metric(list(key), buckets, h[-1])
    return fam


class RequestMetrics:
    """Counters and histograms of decisions and admin requests (event counters, not state).

    The decision metrics are kept as plain numbers updated on the event loop (the only writer)
    and read on the loop when ``/metrics`` is scraped (:meth:`families`); the admin counters,
    rare, are prometheus_client counters.
    """

    def __init__(self, registry: CollectorRegistry, bound: BoundedLabels) -> None:
        r = registry
        self.bound = bound
        self._requests: dict[tuple[str, str], int] = {}
        self._refusals: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}
        #: Stage name as the pipeline spells it -> its histogram (unknown names share ``other``'s).
        self._stage_by_name: dict[str, list[float]] = {}
        self._stage: dict[tuple[str], list[float]] = {}
        self.signatures_returned = 0
        self.admin_requests = Counter("swqos_admin_requests", "Admin API requests by operation and outcome.",
                                      ["operation", "outcome"], registry=r)
        self.admin_auth_failures = Counter("swqos_admin_auth_failures",
                                           "Admin API requests refused for their credential, by reason.",
                                           ["reason"], registry=r)
        self.admin_connections_refused = Counter("swqos_admin_connections_refused",
                                                 "Admin connections closed at once because max_connections were open.",
                                                 registry=r)

    def observe(self, d: Decision) -> None:
        """The decision observer (event loop, every decision): a few dict updates and bisects."""
        rpc = d.rpc if d.rpc in RPCS else OTHER
        outcome = d.outcome if d.outcome in OUTCOMES else OTHER
        ok = outcome == "OK"
        key = (rpc, outcome)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        lkey = (rpc, "ok" if ok else "refused")
        h = self._latency.get(lkey)
        if h is None:
            h = self._latency[lkey] = _new_hist()
        latency = d.latency
        h[bisect_left(LATENCY_BUCKETS, latency)] += 1
        h[-1] += latency
        by_name = self._stage_by_name
        for stage, seconds in d.stage_seconds.items():
            h = by_name.get(stage)
            if h is None:
                h = by_name[stage] = self._stage.setdefault((_stage(stage),), _new_hist())
            h[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            h[-1] += seconds
        if ok:
            if rpc == "SignCertificateVerify":
                self.signatures_returned += 1
            return
        stage = _stage(d.stage)
        rkey = (rpc, stage, self.bound(f"refusal:{stage}", d.label))
        refusals = self._refusals
        refusals[rkey] = refusals.get(rkey, 0) + 1

    def families(self) -> list[Metric]:
        """The decision metrics as metric families (on the loop, at scrape time)."""
        req = CounterMetricFamily("swqos_requests", "Calls decided, by RPC and gRPC outcome (OK or the status name).",
                                  labels=["rpc", "outcome"])
        for key, n in sorted(self._requests.items()):
            req.add_metric(list(key), n)
        ref = CounterMetricFamily("swqos_refusals", "Refused calls by RPC, the stage that refused and its bounded "
                                  "label.", labels=["rpc", "stage", "label"])
        for key3, n in sorted(self._refusals.items()):
            ref.add_metric(list(key3), n)
        sig = CounterMetricFamily("swqos_signatures_returned", "Signatures the host-proxy returned to traders "
                                  "(compare with swqos_enclave_signatures).", labels=[])
        sig.add_metric([], self.signatures_returned)
        return [req, ref, sig,
                _histogram("swqos_request_duration_seconds", "End-to-end time from arrival to decision, by RPC and "
                           "result (ok or refused).", ["rpc", "result"], self._latency),  # type: ignore[arg-type]
                _histogram("swqos_stage_duration_seconds", "Time spent in each pipeline stage the call reached (the "
                           "refusing one included).", ["stage"], self._stage)]  # type: ignore[arg-type]

    def admin_request(self, operation: str, outcome: str) -> None:
        self.admin_requests.labels(self.bound("admin_op", operation), self.bound("admin_outcome", outcome)).inc()

    def admin_auth_failure(self, reason: str) -> None:
        self.admin_auth_failures.labels(self.bound("admin_auth", reason)).inc()


def _fam(name: str, kind: str, help_text: str, labels: tuple[str, ...] = ()) -> MetricFamily:
    return MetricFamily(name, kind, help_text, labels)  # type: ignore[arg-type]


KERNEL_FAMILIES = (
    _fam("swqos_build_info", "gauge", "Release of this host-proxy (value 1).", ("version",)),
    _fam("swqos_serving", "gauge", "1 when a well-formed authorized request would reach the enclave."),
    _fam("swqos_halted", "gauge", "1 while any source (kill switch, release check) halts signing."),
    _fam("swqos_halt", "gauge", "1 for each source currently holding a halt.", ("source",)),
    _fam("swqos_draining", "gauge", "1 while the operator has drained this proxy."),
    _fam("swqos_enclave_up", "gauge", "1 while the enclave connection is healthy (pings answered)."),
    _fam("swqos_enclave_signatures", "gauge", "Signatures the enclave reports having made since it booted "
         "(counted inside the enclave; the host cannot reset it)."),
    _fam("swqos_enclave_identity_info", "gauge", "The enclave's identity key and image measurement (value 1; "
         "measurement is empty outside a Nitro enclave).", ("public_key", "measurement")),
    _fam("swqos_enclave_inflight", "gauge", "Requests sent to the enclave and not yet answered."),
    _fam("swqos_enclave_inflight_limit", "gauge", "Back-pressure bound on enclave requests in flight."),
    _fam("swqos_enclave_round_trips", "counter", "Answered enclave requests (sign, identity, ping)."),
    _fam("swqos_enclave_round_trip_seconds", "counter", "Sum of enclave round-trip times; divide by "
         "swqos_enclave_round_trips_total for the mean."),
    _fam("swqos_enclave_queue_full", "counter", "Requests refused because max_enclave_inflight was reached."),
)
#: Families whose label values come from the kernel itself, not from a bounded vocabulary.
VERBATIM_LABELS = frozenset({"swqos_build_info", "swqos_enclave_identity_info"})


class KernelMetrics:
    """The kernel's state as a MetricsCollector: ``app.state`` and ``app.enclave``, typed."""

    families = KERNEL_FAMILIES

    def __init__(self, state: ServiceState, enclave: EnclaveView | None) -> None:
        self.state = state
        self.enclave = enclave

    def collect(self) -> Iterable[Sample]:
        st = self.state
        yield ("swqos_build_info", (st.release_version,), 1.0)
        yield ("swqos_serving", (), 1.0 if st.serving else 0.0)
        yield ("swqos_halted", (), 1.0 if st.halted else 0.0)
        for source in st.halt_reasons:
            yield ("swqos_halt", (source.replace(" ", "_").lower(),), 1.0)
        yield ("swqos_draining", (), 1.0 if st.draining else 0.0)
        yield ("swqos_enclave_up", (), 1.0 if st.enclave_connected else 0.0)
        identity = st.enclave_identity
        client = self.enclave
        signatures = client.enclave_signatures if client is not None else None
        if signatures is None and identity is not None:
            signatures = identity.signatures
        if signatures is not None:
            yield ("swqos_enclave_signatures", (), float(signatures))
        if identity is not None:
            yield ("swqos_enclave_identity_info", (to_base58(identity.public_key), identity.measurement or ""), 1.0)
        if client is not None:
            yield ("swqos_enclave_inflight", (), float(client.inflight))
            yield ("swqos_enclave_inflight_limit", (), float(client.max_inflight))
            yield ("swqos_enclave_round_trips", (), float(client.round_trips))
            yield ("swqos_enclave_round_trip_seconds", (), float(client.round_trip_seconds))
            yield ("swqos_enclave_queue_full", (), float(client.busy_refusals))


class _Snapshot:
    """A prometheus_client custom collector returning the families built on the loop."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class MetricsEndpoint:
    """What ``GET /metrics`` renders: request metrics plus every registered collector."""

    def __init__(self, collectors: Iterable[tuple[str, MetricsCollector]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.bound = BoundedLabels()
        self.requests = RequestMetrics(self.registry, self.bound)
        self.collectors = list(collectors)
        self.collect_errors = 0
        self.dropped_samples = 0
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)

    def refresh(self) -> None:
        """Read every collector, on the loop; one collector's failure is counted, not fatal."""
        families: list[Metric] = []
        for owner, collector in self.collectors:
            try:
                families += self._families(collector)
            except Exception:  # one plugin's broken stats must not take the whole scrape down
                self.collect_errors += 1
                log.exception("metrics: collector of plugin %r failed", owner)
        errors = CounterMetricFamily("swqos_metrics_collect_errors", "Collectors that raised during a scrape "
                                     "(see the log).", labels=[])
        errors.add_metric([], self.collect_errors)
        dropped = CounterMetricFamily("swqos_metrics_dropped_samples", "Samples dropped: family not declared by "
                                      "their collector, or wrong label count.", labels=[])
        dropped.add_metric([], self.dropped_samples)
        self._snapshot.families = [*self.requests.families(), *families, errors, dropped]

    def _families(self, collector: MetricsCollector) -> list[Metric]:
        declared = {f.name: f for f in collector.families}
        built: dict[str, Metric] = {}
        for f in declared.values():
            cls = CounterMetricFamily if f.kind == "counter" else GaugeMetricFamily
            built[f.name] = cls(f.name, f.help, labels=list(f.labels))
        for name, labels, value in collector.collect():
            f = declared.get(name)
            if f is None or len(labels) != len(f.labels):
                self.dropped_samples += 1
                continue
            if name not in VERBATIM_LABELS:
                labels = tuple(self.bound(f"{name}:{key}", str(v)) for key, v in zip(f.labels, labels, strict=True))
            built[name].add_metric(list(labels), float(value))
        # Declared families are listed even without samples: the exposition shows what exists.
        return list(built.values())

    async def render(self) -> bytes:
        """The text exposition. Collectors are read here, on the loop; formatting runs in a thread."""
        self.refresh()
        return await asyncio.to_thread(generate_latest, self.registry)

    def render_sync(self) -> bytes:
        self.refresh()
        return generate_latest(self.registry)


__all__ = ["KERNEL_FAMILIES", "LATENCY_BUCKETS", "BoundedLabels", "KernelMetrics", "MetricsEndpoint",
           "RequestMetrics"]
