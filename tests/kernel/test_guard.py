"""The kernel's brute-force guard with a fake clock: doubling bans, the memory bound, and the bound
never forgetting evidence (the ban-evasion case of issue 13)."""

from __future__ import annotations

import grpc
import pytest

from swqos_core.errors import Rejection
from swqos_core.guard import BruteForceGuard, BruteForceSettings


def test_repeat_offence_doubles_the_ban():
    mono = [0.0]
    g = BruteForceGuard(BruteForceSettings(ban_seconds=100, ban_max_seconds=1000), monotonic=lambda: mono[0])

    def ban_once() -> float:
        for _ in range(20):
            try:
                g.check("k")
            except Rejection:
                pass
            else:
                g.failure("k")
        start = mono[0]
        while g.banned("k"):
            mono[0] += 1
        return mono[0] - start

    assert ban_once() == 100
    assert ban_once() == 200
    assert ban_once() == 400


def test_memory_bound_and_flood_cannot_lift_a_ban():
    mono = [0.0]
    g = BruteForceGuard(BruteForceSettings(max_entries=64), monotonic=lambda: mono[0])
    for _ in range(20):
        g.failure("attacker")
    assert g.banned("attacker")
    for i in range(10_000):  # a flood of distinct addresses, one failure each
        g.failure(i)
    assert len(g) <= 64
    assert g.banned("attacker")
    with pytest.raises(Rejection) as ei:
        g.check("attacker")
    assert ei.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_table_full_of_bans_stays_bounded():
    mono = [0.0]
    g = BruteForceGuard(BruteForceSettings(max_entries=16), monotonic=lambda: mono[0])
    for k in range(16):
        for _ in range(20):
            g.failure(k)
    assert all(g.banned(k) for k in range(16))
    g.failure("newcomer")
    assert len(g) == 16 and g.untracked == 1
    assert all(g.banned(k) for k in range(16))
    mono[0] += 10_000  # bans over: their slots are reusable
    g.failure("newcomer")
    assert len(g) <= 16 and g.untracked == 1


def test_success_clears_backoff_only():
    mono = [0.0]
    g = BruteForceGuard(BruteForceSettings(), monotonic=lambda: mono[0])
    for _ in range(5):
        g.failure("k")
    with pytest.raises(Rejection):
        g.check("k")
    g.success("k")
    g.check("k")  # no longer backing off


def test_settings_validation():
    with pytest.raises(ValueError):
        BruteForceSettings(backoff_after=30, ban_after=20)
    with pytest.raises(ValueError):
        BruteForceSettings(max_entries=1)


def test_nineteen_failures_then_a_flood_then_the_twentieth_bans():
    """Issue 13's ban evasion: the flood must not make the table forget the 19 failures."""
    mono = [0.0]
    g = BruteForceGuard(BruteForceSettings(backoff_after=20), monotonic=lambda: mono[0])
    for _ in range(19):
        g.failure("attacker")
    for i in range(100_000):  # one failure each from 100k other addresses: fills the table
        g.failure(i)
    # the table (100k) is full of recent evidence: the flood's last key is not recorded...
    assert len(g) == 100_000 and g.untracked == 1
    with pytest.raises(Rejection) as ei:  # ...and refused before verification, counted
        g.check("someone-new")
    assert ei.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and ei.value.label == "bruteforce_full"
    assert ei.value.retry_after and g.snapshot()["refused_new_keys"] == 1
    g.check("attacker")  # a tracked key is still checked normally
    g.failure("attacker")
    assert g.banned("attacker")
    with pytest.raises(Rejection) as ei:
        g.check("attacker")
    assert ei.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_aged_out_entries_make_room_but_recent_ones_never_do():
    mono = [0.0]
    s = BruteForceSettings(max_entries=16, forget_after_seconds=600, ban_window_seconds=60)
    g = BruteForceGuard(s, monotonic=lambda: mono[0])
    for k in range(16):
        g.failure(k)
        mono[0] += 1
    with pytest.raises(Rejection):
        g.check("new")
    mono[0] = 0 + 600.5  # key 0's failure (t=0) has aged out; key 1's (t=1) has not
    g.check("new")  # room made by dropping key 0 only
    g.failure("new")
    assert len(g) == 16 and g.untracked == 0
    g.failure("newer")
    assert g.untracked == 1  # key 1 is still evidence
    mono[0] += 1
    g.failure("newer")
    assert g.untracked == 1 and len(g) == 16


def test_ended_bans_make_room():
    mono = [0.0]
    g = BruteForceGuard(BruteForceSettings(max_entries=16, ban_seconds=100), monotonic=lambda: mono[0])
    for k in range(16):
        for _ in range(20):
            g.failure(k)
    with pytest.raises(Rejection) as ei:
        g.check("new")
    assert ei.value.label == "bruteforce_full"
    mono[0] += 100.5
    g.check("new")  # every ban ended: swept, room for the newcomer
    g.failure("new")
    assert len(g) <= 16 and g.snapshot()["refused_new_keys"] == 1


def test_failure_after_a_ban_ended_counts_from_zero_with_strikes_kept():
    mono = [0.0]
    g = BruteForceGuard(BruteForceSettings(ban_seconds=100, ban_max_seconds=1000), monotonic=lambda: mono[0])
    for _ in range(20):
        g.failure("k")
    mono[0] += 101
    g.failure("k")  # the ban ended; this is failure 1 of a new round
    assert not g.banned("k")
    for _ in range(19):
        g.failure("k")
    assert g.banned("k")
    mono[0] += 199
    assert g.banned("k")  # second ban: 200 s
