"""Prometheus metrics of one host-proxy, served on the admin listener (``GET /metrics``).

One :class:`~prometheus_client.CollectorRegistry` per app, no global state: tests build several
apps in one process. Two kinds of metrics:

* request metrics, updated by :meth:`Metrics.observe` (a pipeline observer) on every decision;
* state metrics (enclave, kill switch, limiter tables, bans, CDN ranges, audit log), read from
  the layers by duck typing when a scrape arrives. They are read on the event loop (the layers
  are not thread-safe) into plain metric families; only the text formatting runs in a thread,
  so a scrape costs the signing path a few tens of microseconds of loop time.

Every label value is bounded: RPC, status and stage names come from closed sets, refusal labels
must look like identifiers and are capped per stage (anything else becomes ``other``), layer
names come from the operator's config. A trader-controlled string (``sub``, an address, a
reason) is never a label. docs/operations.md lists every name and label.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from swqos_core.identity import to_base58
from swqos_core.pipeline import ENCLAVE_STAGES, STAGES, Decision

log = logging.getLogger("swqos.metrics")

#: Sub-millisecond to the 100 ms deadline, and a little past it.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
RPCS = frozenset({"SignCertificateVerify", "GetIdentity"})
OUTCOMES = frozenset({"OK"} | {c.name for c in grpc.StatusCode})
KNOWN_STAGES = frozenset(STAGES) | frozenset(ENCLAVE_STAGES) | {"deadline"}
#: A refusal label is used only if it looks like an identifier ...
LABEL_RE = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,47}")
#: ... and only the first this many distinct labels per stage; later ones count as "other".
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


class Metrics:
    """Request metrics (observer) and state metrics (collector) of one host-proxy."""

    def __init__(self, *, state: Any, enclave: Any = None, app: Any = None, audit: Any = None,
                 admin_guard: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.state, self.enclave, self.app, self.audit = state, enclave, app, audit
        self.admin_guard = admin_guard
        self.bound = BoundedLabels()
        self.requests = Counter("swqos_requests", "Calls decided, by RPC and gRPC outcome (OK or the status name).",
                                ["rpc", "outcome"], registry=r)
        self.refusals = Counter("swqos_refusals", "Refused calls by RPC, the stage that refused and its bounded label.",
                                ["rpc", "stage", "label"], registry=r)
        self.latency = Histogram("swqos_request_duration_seconds",
                                 "End-to-end time from arrival to decision, by RPC and result (ok or refused).",
                                 ["rpc", "result"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage_latency = Histogram("swqos_stage_duration_seconds",
                                       "Time spent in each pipeline stage that completed (a refusing stage is not timed).",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.signatures_returned = Counter("swqos_signatures_returned",
                                           "Signatures the host-proxy returned to traders (compare with "
                                           "swqos_enclave_signatures).", registry=r)
        self.admin_requests = Counter("swqos_admin_requests", "Admin API requests by operation and outcome.",
                                      ["operation", "outcome"], registry=r)
        self.admin_auth_failures = Counter("swqos_admin_auth_failures",
                                           "Admin API requests refused for their credential, by reason.",
                                           ["reason"], registry=r)
        self.collect_errors = 0
        self._state_collector = _StateCollector(self)
        r.register(self._state_collector)
        self._children: dict[tuple[str, ...], Any] = {}

    # --- request metrics (event loop, every decision) ------------------------------------------
    def observe(self, d: Decision) -> None:
        rpc = _rpc(d.rpc)
        outcome = d.outcome if d.outcome in OUTCOMES else OTHER
        ok = d.outcome == "OK"
        self._child("req", self.requests, rpc, outcome).inc()
        self._child("lat", self.latency, rpc, "ok" if ok else "refused").observe(d.latency)
        for stage, seconds in d.stage_seconds.items():
            self._child("stage", self.stage_latency, _stage(stage)).observe(seconds)
        if ok:
            if rpc == "SignCertificateVerify":
                self.signatures_returned.inc()
            return
        stage = _stage(d.stage)
        label = self.bound(f"refusal:{stage}", d.label)
        self._child("ref", self.refusals, rpc, stage, label).inc()

    def _child(self, kind: str, metric: Any, *labels: str) -> Any:
        # labels() takes a lock and builds a tuple each time; the children never change, keep them.
        key = (kind, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def admin_request(self, operation: str, outcome: str) -> None:
        self.admin_requests.labels(self.bound("admin_op", operation), self.bound("admin_outcome", outcome)).inc()

    def admin_auth_failure(self, reason: str) -> None:
        self.admin_auth_failures.labels(self.bound("admin_auth", reason)).inc()

    # --- scrape ------------------------------------------------------------------------------
    async def render(self) -> bytes:
        """The text exposition. State is read here, on the loop; formatting runs in a thread."""
        self._state_collector.refresh()
        return await asyncio.to_thread(generate_latest, self.registry)

    def render_sync(self) -> bytes:
        self._state_collector.refresh()
        return generate_latest(self.registry)


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


class _StateCollector:
    """Builds the state families on the loop (:meth:`refresh`); the scrape thread only reads them."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics
        self._families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self._families)

    def refresh(self) -> None:
        families: list[Metric] = []
        for part in (self._service, self._enclave, self._revocation, self._auth, self._rate_limit,
                     self._client_ip, self._audit):
            try:
                families += part()
            except Exception:  # one layer's broken stats must not take the whole scrape down
                self.m.collect_errors += 1
                log.exception("metrics: collecting %s failed", part.__name__)
        errors = _counter("swqos_metrics_collect_errors", "State collections that raised (see the log).")
        errors.add_metric([], self.m.collect_errors)
        families.append(errors)
        self._families = families

    def _layers(self, kind: str) -> list[tuple[str, Any]]:
        app = self.m.app
        return list(app.layers.get(kind, [])) if app is not None else []

    # --- parts -------------------------------------------------------------------------------
    def _service(self) -> list[Metric]:
        st = self.m.state
        info = _gauge("swqos_build_info", "Release of this host-proxy (value 1).", ["version"])
        info.add_metric([st.release_version], 1)
        serving = _gauge("swqos_serving", "1 when a well-formed authorized request would reach the enclave.")
        serving.add_metric([], 1 if st.serving else 0)
        halted = _gauge("swqos_halted", "1 while any source (kill switch, release check) halts signing.")
        halted.add_metric([], 1 if st.halted else 0)
        by_source = _gauge("swqos_halt", "1 for each source currently holding a halt.", ["source"])
        for source in st.halt_reasons:
            by_source.add_metric([self.m.bound("halt_source", source.replace(" ", "_").lower())], 1)
        draining = _gauge("swqos_draining", "1 while the operator has drained this proxy.")
        draining.add_metric([], 1 if st.draining else 0)
        return [info, serving, halted, by_source, draining]

    def _enclave(self) -> list[Metric]:
        st, client = self.m.state, self.m.enclave
        up = _gauge("swqos_enclave_up", "1 while the enclave connection is healthy (pings answered).")
        up.add_metric([], 1 if st.enclave_connected else 0)
        out: list[Metric] = [up]
        identity = st.enclave_identity
        signatures = getattr(client, "enclave_signatures", None)
        if signatures is None and identity is not None:
            signatures = identity.signatures
        if signatures is not None:
            g = _gauge("swqos_enclave_signatures", "Signatures the enclave reports having made since it booted "
                       "(counted inside the enclave; the host cannot reset it).")
            g.add_metric([], signatures)
            out.append(g)
        if identity is not None:
            info = _gauge("swqos_enclave_identity_info", "The enclave's identity key and image measurement "
                          "(value 1; measurement is empty outside a Nitro enclave).", ["public_key", "measurement"])
            info.add_metric([to_base58(identity.public_key), identity.measurement or ""], 1)
            out.append(info)
        if client is not None:
            g = _gauge("swqos_enclave_inflight", "Requests sent to the enclave and not yet answered.")
            g.add_metric([], client.inflight)
            cap = _gauge("swqos_enclave_inflight_limit", "Back-pressure bound on enclave requests in flight.")
            cap.add_metric([], client.max_inflight)
            n = _counter("swqos_enclave_round_trips", "Answered enclave requests (sign, identity, ping).")
            n.add_metric([], client.round_trips)
            s = _counter("swqos_enclave_round_trip_seconds", "Sum of enclave round-trip times; divide by "
                         "swqos_enclave_round_trips_total for the mean.")
            s.add_metric([], client.round_trip_seconds)
            busy = _counter("swqos_enclave_queue_full", "Requests refused because max_enclave_inflight was reached.")
            busy.add_metric([], client.busy_refusals)
            out += [g, cap, n, s, busy]
        return out

    def _revocation(self) -> list[Metric]:
        version = _gauge("swqos_kill_switch_manifest_version", "Version of the last accepted revocation manifest.",
                         ["source"])
        age = _gauge("swqos_kill_switch_manifest_age_seconds", "Seconds since the accepted manifest was issued.",
                     ["source"])
        halted = _gauge("swqos_kill_switch_halted", "1 while this revocation source holds a halt.", ["source"])
        stale = _gauge("swqos_kill_switch_stale", "1 while this source holds no usable manifest.", ["source"])
        polls = _counter("swqos_kill_switch_polls", "Manifest polls.", ["source"])
        failures = _gauge("swqos_kill_switch_consecutive_failures", "Polls in a row without a valid manifest.",
                          ["source"])
        rejected = _counter("swqos_kill_switch_rejected", "Manifests refused (bad signature, rollback, ...).",
                            ["source", "reason"])
        fetch = _counter("swqos_kill_switch_fetch_failures", "Manifest fetches that failed.", ["source", "reason"])
        last = _gauge("swqos_kill_switch_last_success_timestamp_seconds", "Unix time of the last valid poll.",
                      ["source"])
        any_source = False
        for name, layer in self._layers("revocation"):
            engine = getattr(layer, "engine", layer)
            if not hasattr(engine, "manifest_version"):
                continue
            any_source = True
            if engine.manifest_version is not None:
                version.add_metric([name], engine.manifest_version)
            age_s = engine.manifest_age_seconds() if callable(getattr(engine, "manifest_age_seconds", None)) else None
            if age_s is not None:
                age.add_metric([name], age_s)
            halted.add_metric([name], 1 if getattr(engine, "halt_reason", None) else 0)
            stale.add_metric([name], 1 if getattr(engine, "stale_reason", None) else 0)
            polls.add_metric([name], getattr(engine, "polls_total", 0))
            failures.add_metric([name], getattr(engine, "consecutive_failures", 0))
            for reason, n in dict(getattr(engine, "rejected_total", {})).items():
                rejected.add_metric([name, self.m.bound("ks_reject", str(reason))], n)
            for reason, n in dict(getattr(engine, "fetch_failures_total", {})).items():
                fetch.add_metric([name, self.m.bound("ks_fetch", str(reason))], n)
            if getattr(engine, "last_success_unix", None) is not None:
                last.add_metric([name], engine.last_success_unix)
        return [version, age, halted, stale, polls, failures, rejected, fetch, last] if any_source else []

    def _auth(self) -> list[Metric]:
        tracked = _gauge("swqos_auth_bruteforce_tracked", "Address buckets with recorded authentication failures.",
                         ["layer"])
        banned = _gauge("swqos_auth_bruteforce_banned", "Address buckets banned for failed authentications.",
                        ["layer"])
        backoff = _gauge("swqos_auth_bruteforce_backing_off", "Address buckets in exponential backoff.", ["layer"])
        cache = _gauge("swqos_auth_cache_entries", "Verified credentials cached.", ["layer"])
        hits = _counter("swqos_auth_cache_hits", "Credential cache hits (layers that count them).", ["layer"])
        misses = _counter("swqos_auth_cache_misses", "Credential cache misses (layers that count them).", ["layer"])
        layers = self._layers("auth")
        if self.m.admin_guard is not None:
            layers.append(("admin", self.m.admin_guard))
        for name, layer in layers:
            guard = getattr(layer, "guard", None)
            snap = guard.snapshot() if guard is not None and callable(getattr(guard, "snapshot", None)) else None
            if isinstance(snap, dict):
                tracked.add_metric([name], snap.get("tracked", 0))
                banned.add_metric([name], snap.get("banned", 0))
                backoff.add_metric([name], snap.get("backing_off", 0))
            c = getattr(layer, "cache", None)
            if c is not None and hasattr(c, "__len__"):
                cache.add_metric([name], len(c))
                if hasattr(c, "hits") and hasattr(c, "misses"):
                    hits.add_metric([name], c.hits)
                    misses.add_metric([name], c.misses)
        return [tracked, banned, backoff, cache, hits, misses]

    def _rate_limit(self) -> list[Metric]:
        keys = _gauge("swqos_ratelimit_tracked_keys", "Keys held by each limiter table.", ["layer", "table"])
        cap = _gauge("swqos_ratelimit_table_capacity", "Capacity of each limiter table.", ["layer", "table"])
        evicted = _counter("swqos_ratelimit_evicted", "Keys evicted from a full table.", ["layer", "table"])
        refused = _counter("swqos_ratelimit_refused", "Refusals by limit (the layer's own count).", ["layer", "limit"])
        admitted = _counter("swqos_ratelimit_admitted", "Admissions by check (address or principal).",
                            ["layer", "check"])
        overrides = _gauge("swqos_ratelimit_trader_overrides", "Per-trader quota overrides, by source.",
                           ["layer", "source"])
        for name, layer in self._layers("rate_limit"):
            stats = layer.stats() if callable(getattr(layer, "stats", None)) else None
            if not isinstance(stats, dict):
                continue
            for table, entry in dict(stats.get("tables", {})).items():
                t = self.m.bound("rl_table", str(table))
                keys.add_metric([name, t], entry.get("tracked", 0))
                if "cap" in entry:
                    cap.add_metric([name, t], entry["cap"])
                if "evicted" in entry:
                    evicted.add_metric([name, t], entry["evicted"])
            for limit, n in dict(stats.get("refused", {})).items():
                refused.add_metric([name, self.m.bound("rl_limit", str(limit))], n)
            for check, n in dict(stats.get("admitted", {})).items():
                admitted.add_metric([name, self.m.bound("rl_check", str(check))], n)
            ov = stats.get("overrides", {})
            for source in ("traders_config", "traders_runtime"):
                if source in ov:
                    overrides.add_metric([name, source.removeprefix("traders_")], ov[source])
        return [keys, cap, evicted, refused, admitted, overrides]

    def _client_ip(self) -> list[Metric]:
        ranges = _gauge("swqos_cdn_ranges", "CDN edge networks trusted by each client-IP resolver.",
                        ["layer", "family"])
        serial = _gauge("swqos_cdn_ranges_serial", "Serial (or fetch time) of the range list in use.", ["layer"])
        for name, layer in self._layers("client_ip"):
            describe = getattr(layer, "describe", None)
            info = describe() if callable(describe) else None
            if not isinstance(info, dict):
                continue
            for family in ("ipv4", "ipv6"):
                if isinstance(info.get(family), int):
                    ranges.add_metric([name, family], info[family])
            if isinstance(info.get("serial"), int):
                serial.add_metric([name], info["serial"])
        return [ranges, serial]

    def _audit(self) -> list[Metric]:
        audit = self.m.audit
        if audit is None:
            return []
        enabled = _gauge("swqos_audit_enabled", "1 when decisions are written to an audit file.")
        enabled.add_metric([], 1 if audit.enabled else 0)
        lines = _counter("swqos_audit_lines", "Audit lines written.")
        lines.add_metric([], audit.lines_written)
        dropped = _counter("swqos_audit_dropped", "Audit lines lost (queue full or write error).")
        dropped.add_metric([], audit.dropped)
        errors = _counter("swqos_audit_write_errors", "Failed audit writes or reopens.")
        errors.add_metric([], audit.write_errors)
        return [enabled, lines, dropped, errors]


__all__ = ["LATENCY_BUCKETS", "BoundedLabels", "Metrics"]
