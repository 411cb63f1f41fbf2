"""The per-second ring, percentiles and the bounded views behind the pages."""

from __future__ import annotations

from swqos_core.state import EnclaveIdentity, ServiceState
from swqos_dashboard.recent import RecentDecisions, Reconcile, Subjects
from swqos_dashboard.traffic import EDGES, MAX_KEYS, TrafficRing, latency_bin, percentile

from .dashboard_helpers import Clock, decision


def test_rates_refusals_rate_limits_and_bans_land_in_their_second():
    clock = Clock()
    ring = TrafficRing(60, clock)
    for _ in range(4):
        ring.observe(decision())
    ring.observe(decision("PERMISSION_DENIED", stage="auth", label="revoked"))
    ring.observe(decision("RESOURCE_EXHAUSTED", stage="address_limit", label="address_rate"))
    ring.observe(decision("PERMISSION_DENIED", stage="auth", label="bruteforce_ban"))
    ring.observe(decision("OK", rpc="GetIdentity"))  # answered, not a signature
    feed = ring.series(60, 1)
    assert feed["totals"] == {"requests": 8, "signatures": 4, "refusals": 3, "rate_limited": 1, "bans": 1}
    assert feed["points"]["signatures"][-1] == 4 and feed["points"]["signatures"][:-1] == [0] * 59
    assert feed["refusals_by_stage"] == {"auth": 2, "address_limit": 1}
    assert feed["refusals_by_label"] == {"auth/revoked": 1, "address_limit/address_rate": 1,
                                         "auth/bruteforce_ban": 1}


def test_steps_average_per_second_and_old_seconds_fall_out_of_the_ring():
    clock = Clock()
    ring = TrafficRing(60, clock)
    for _ in range(10):
        ring.observe(decision())
    clock.now += 1
    for _ in range(30):
        ring.observe(decision())
    feed = ring.series(60, 10)
    assert len(feed["points"]["signatures"]) == 6
    assert feed["points"]["signatures"][-1] == 4.0  # (10 + 30) / 10 s
    clock.now += 60  # a minute later both seconds are gone, and their slots are reused
    ring.observe(decision("UNAUTHENTICATED", stage="auth", label="no_credential"))
    feed = ring.series(60, 10)
    assert feed["totals"]["signatures"] == 0 and feed["totals"]["refusals"] == 1
    assert len(ring.buckets) == 60


def test_window_and_step_are_clamped_to_the_ring():
    ring = TrafficRing(120, Clock())
    feed = ring.series(100_000, 7)
    assert feed["window"] == 119 and feed["step"] == 7
    assert len(feed["points"]["p50"]) == 17


def test_percentiles_are_bin_upper_edges_within_fifteen_percent():
    clock = Clock()
    ring = TrafficRing(60, clock)
    for ms in range(1, 101):  # 1..100 ms
        ring.observe(decision(latency=ms / 1000))
    feed = ring.series(60, 60)
    assert 50 <= feed["p50_ms"] <= 50 * 1.155
    assert 99 <= feed["p99_ms"] <= 99 * 1.155
    assert percentile({}, 0.5) is None  # type: ignore[arg-type]
    assert latency_bin(0.0) == 0 and latency_bin(1e6) == len(EDGES) - 1


def test_distinct_refusal_keys_per_second_are_bounded():
    ring = TrafficRing(60, Clock())
    for i in range(200):
        ring.observe(decision("PERMISSION_DENIED", stage="auth", label=f"label-{i}"))
    bucket = ring.buckets[int(ring.clock()) % 60]
    assert len(bucket.by_key) <= MAX_KEYS + 1
    assert bucket.by_key["other"] > 0
    assert bucket.refusals == 200


def test_recent_decisions_are_bounded_and_filtered():
    recent = RecentDecisions(10, Clock())
    for i in range(15):
        recent.observe(decision(subject=f"t{i % 3}"))
    recent.observe(decision("PERMISSION_DENIED", subject="t1", stage="auth", label="revoked"))
    assert len(recent.ring) == 10 and recent.dropped == 6
    assert all(s.decision.subject == "t1" for s in recent.filtered("t1"))
    refused = recent.filtered(outcome="refused")
    assert [s.decision.outcome for s in refused] == ["PERMISSION_DENIED"]
    assert recent.filtered(outcome="PERMISSION_DENIED") == refused
    assert len(recent.filtered(outcome="OK")) == 9
    assert recent.filtered(limit=3)[0].decision.outcome == "PERMISSION_DENIED"  # newest first


def test_subjects_keep_usage_and_forget_the_least_recent():
    subjects = Subjects(10, Clock())
    for i in range(12):
        subjects.observe(decision(subject=f"t{i}"))
    subjects.observe(decision("PERMISSION_DENIED", subject="t5", stage="auth"))
    subjects.observe(decision(subject=None))
    assert len(subjects.table) == 10 and subjects.evicted == 2
    assert "t0" not in subjects.table and "t1" not in subjects.table
    first = next(subjects.recent(1))
    assert first[0] == "t5" and (first[1].requests, first[1].signatures, first[1].refusals) == (2, 1, 1)


def test_reconcile_compares_against_the_counter_at_connect_and_restarts_on_reconnect():
    state = ServiceState("0.1.0")
    state.set_enclave(True, EnclaveIdentity(b"k" * 32, None, 100))
    rec = Reconcile()
    rec.bind(state)
    for _ in range(3):
        rec.observe(decision())
    rec.observe(decision("UNAVAILABLE", stage="enclave"))
    assert rec.report(103)["difference"] == 0
    assert rec.report(105)["difference"] == 2  # the enclave signed two the proxy never returned
    assert rec.report(None)["difference"] is None
    state.set_enclave(True, EnclaveIdentity(b"k" * 32, None, 0))  # a restarted enclave
    rec.observe(decision())
    report = rec.report(1)
    assert report["difference"] == 0 and report["reconnects"] == 1 and report["host_returned_since_start"] == 4
