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
