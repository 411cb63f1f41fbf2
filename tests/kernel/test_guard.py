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


def v6_key(prefix48: int, subnet: int) -> int:
    """``address_key`` of an address in /64 number ``subnet`` (16 bits) of a /48."""
    import ipaddress

    from swqos_core.net import address_key

    return address_key(ipaddress.IPv6Address((prefix48 << 80) | (subnet << 64) | 1))


def test_a_slash48_rotating_through_its_slash64s_is_banned_as_a_whole():
    mono = [0.0]
    g = BruteForceGuard(BruteForceSettings(ban_after_56=40, ban_after_48=80), monotonic=lambda: mono[0])
    base = 0x20010DB80001
    for subnet in range(40):  # 40 /64s in 40 different /56s, two failures each: no /64 or /56 near a ban
        for _ in range(2):
            g.failure(v6_key(base, subnet << 8))
    with pytest.raises(Rejection) as ei:
        g.check(v6_key(base, 0xFFFF))  # a fresh /64 of the same /48
    assert ei.value.code == grpc.StatusCode.PERMISSION_DENIED and ei.value.label == "bruteforce_ban_range"
    g.check(v6_key(base + 1, 0))  # the next /48 is not affected
    g.check(4_000_000_000)  # nor IPv4


def test_a_slash56_has_its_own_threshold_and_aggregates_never_back_off():
    mono = [0.0]
    g = BruteForceGuard(BruteForceSettings(ban_after_56=40, ban_after_48=0), monotonic=lambda: mono[0])
    base = 0x20010DB80002
    for i in range(39):  # 39 /64s of one /56, one failure each
        g.failure(v6_key(base, i))
        g.check(v6_key(base, 200))  # the /56 is counting, never backing off
    g.failure(v6_key(base, 39))
    with pytest.raises(Rejection) as ei:
        g.check(v6_key(base, 200))
    assert ei.value.label == "bruteforce_ban_range"
    g.check(v6_key(base, 0x100))  # another /56 of the same /48: /48 counting is off here


def test_aggregate_thresholds_are_validated():
    with pytest.raises(ValueError):
        BruteForceSettings(ban_after=20, ban_after_48=10)
    BruteForceSettings(ban_after_56=0, ban_after_48=0)


class SharedStore:
    """Just enough of a shared StateStore for the guard: records reports, answers bans."""

    shared = True

    def __init__(self) -> None:
        self.reports: list[tuple[str, int]] = []
        self.bans: dict[str, float] = {}

    def report_failures(self, items):
        self.reports += [(k, rule.ban_after) for k, rule in items]

    def ban_remaining(self, key):
        return self.bans.get(key, 0.0)


def test_with_a_shared_store_failures_are_reported_and_its_bans_refused():
    from swqos_core.guard import store_key

    store = SharedStore()
    g = BruteForceGuard(BruteForceSettings(), name="jwt", store=store)  # type: ignore[arg-type]
    key = v6_key(0x20010DB80003, 5)
    g.failure(key)
    assert [n for _, n in store.reports] == [20, 40, 80]  # the /64, its /56 and its /48, own thresholds
    assert store.reports[0][0] == store_key("jwt", key)
    g.check(key)
    store.bans[store_key("jwt", 1234)] = 30.0  # banned by another replica
    with pytest.raises(Rejection) as ei:
        g.check(1234)
    assert ei.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_the_in_process_store_adds_nothing():
    from swqos_core.store import MemoryStateStore

    g = BruteForceGuard(BruteForceSettings(), store=MemoryStateStore())
    assert g.store is None
