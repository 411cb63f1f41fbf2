"""What the Traffic page draws: per-second buckets of decisions, in a fixed ring.

One :class:`Bucket` per wall-clock second, ``traffic_seconds`` of them (an hour by default),
reused in place as time goes round: memory is fixed by the setting, whatever the load. Latency is
kept as a sparse log-scale histogram per bucket (16 bins a decade from 0.1 ms to 10 s), so the
p50 and p99 of any window are read from merged histograms without keeping samples; a percentile is
the upper edge of its bin (at most 15 % above the true value).

Refusal keys are ``stage`` and ``stage/label``: labels are bounded by contract (metric labels),
and a bucket holding more than :data:`MAX_KEYS` distinct keys folds the rest into ``other``.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from swqos_core.extensions import Decision

SIGN_RPC = "SignCertificateVerify"
#: Stages whose refusals are rate-limit hits.
RATE_LIMIT_STAGES = frozenset({"address_limit", "subject_limit"})
#: Distinct refusal keys per bucket before the rest are counted as ``other``.
MAX_KEYS = 64
BINS_PER_DECADE = 16
LOWEST = 1e-4  # seconds: everything faster falls in bin 0
DECADES = 5
EDGES = tuple(LOWEST * 10 ** (i / BINS_PER_DECADE) for i in range(1, BINS_PER_DECADE * DECADES + 1))


def latency_bin(seconds: float) -> int:
    """Index of the first edge >= ``seconds`` (the last bin holds everything slower)."""
    return min(bisect.bisect_left(EDGES, seconds), len(EDGES) - 1)


def is_ban(d: Decision) -> bool:
    return d.label is not None and "ban" in d.label


class Bucket:
    __slots__ = ("bans", "by_key", "latency", "rate_limited", "refusals", "requests", "second", "signatures")

    def __init__(self) -> None:
        self.reset(-1)

    def reset(self, second: int) -> None:
        self.second = second
        self.requests = 0
        self.signatures = 0
        self.refusals = 0
        self.by_key: Counter[str] = Counter()
        self.rate_limited = 0
        self.bans = 0
        self.latency: Counter[int] = Counter()

    def add(self, d: Decision) -> None:
        self.requests += 1
        self.latency[latency_bin(max(d.latency, 0.0))] += 1
        if d.outcome == "OK":
            if d.rpc == SIGN_RPC:
                self.signatures += 1
            return
        self.refusals += 1
        stage = d.stage or "unknown"
        for key in (stage, f"{stage}/{d.label or '-'}"):
            if key in self.by_key or len(self.by_key) < MAX_KEYS:
                self.by_key[key] += 1
            else:
                self.by_key["other"] += 1
        if stage in RATE_LIMIT_STAGES:
            self.rate_limited += 1
        if is_ban(d):
            self.bans += 1


def percentile(hist: Counter[int], q: float) -> float | None:
    """The upper edge (seconds) of the bin holding the ``q`` quantile; None without samples."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return EDGES[index]
    return EDGES[-1]


class TrafficRing:
    """The last ``seconds`` seconds of decisions, one bucket a second (a decision observer)."""

    def __init__(self, seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.seconds = seconds
        self.clock = clock
        self.buckets = [Bucket() for _ in range(seconds)]
        self.observed = 0

    def observe(self, d: Decision) -> None:
        now = int(self.clock())
        bucket = self.buckets[now % self.seconds]
        if bucket.second != now:
            bucket.reset(now)
        bucket.add(d)
        self.observed += 1

    def window(self, now: int, seconds: int) -> list[Bucket | None]:
        """Buckets for the ``seconds`` seconds ending at ``now``, oldest first (None: no traffic)."""
        out: list[Bucket | None] = []
        for second in range(now - seconds + 1, now + 1):
            b = self.buckets[second % self.seconds]
            out.append(b if b.second == second else None)
        return out

    def series(self, window: int | None = None, step: int = 10) -> dict[str, Any]:
        """The Traffic page's JSON: per-``step`` rates over ``window`` seconds, and window totals."""
        window = min(window or self.seconds, self.seconds)
        step = max(1, min(step, window))
        window -= window % step
        now = int(self.clock())
        buckets = self.window(now, window)
        points: dict[str, list[float | None]] = {k: [] for k in
                                                 ("signatures", "refusals", "rate_limited", "bans", "p50", "p99")}
        total_keys: Counter[str] = Counter()
        total_hist: Counter[int] = Counter()
        totals = Counter({"requests": 0, "signatures": 0, "refusals": 0, "rate_limited": 0, "bans": 0})
        for start in range(0, window, step):
            hist: Counter[int] = Counter()
            sums = Counter()
            for b in buckets[start:start + step]:
                if b is None:
                    continue
                sums["signatures"] += b.signatures
                sums["refusals"] += b.refusals
                sums["rate_limited"] += b.rate_limited
                sums["bans"] += b.bans
                sums["requests"] += b.requests
                hist.update(b.latency)
                total_keys.update(b.by_key)
            for key in ("signatures", "refusals", "rate_limited", "bans"):
                points[key].append(round(sums[key] / step, 3))
            p50, p99 = percentile(hist, 0.50), percentile(hist, 0.99)
            points["p50"].append(None if p50 is None else round(p50 * 1000, 3))
            points["p99"].append(None if p99 is None else round(p99 * 1000, 3))
            totals.update(sums)
            total_hist.update(hist)
        stages = {k: v for k, v in total_keys.items() if "/" not in k}
        labels = {k: v for k, v in total_keys.items() if "/" in k or k == "other"}
        p50, p99 = percentile(total_hist, 0.50), percentile(total_hist, 0.99)
        return {
            "now": now,
            "window": window,
            "step": step,
            "points": points,
            "totals": dict(totals),
            "refusals_by_stage": dict(sorted(stages.items(), key=lambda kv: -kv[1])),
            "refusals_by_label": dict(sorted(labels.items(), key=lambda kv: -kv[1])),
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
        }
