"""MemoryTatStore: compare-and-set, expiry, and the eviction policy that spares limited keys."""

from __future__ import annotations

import pytest

from swqos_ratelimit.store import MemoryTatStore, StoreFull, TatStore

from .helpers import MS

TOL = 100 * MS  # tolerance used below: an entry with tat - now > 100 ms is limited
NOW = 10**12


async def test_is_a_tat_store():
    assert isinstance(MemoryTatStore(4, TOL), TatStore)


async def test_compare_and_set_only_from_the_expected_value():
    s = MemoryTatStore(4, TOL)
    assert await s.compare_and_set("k", None, 5, NOW) is True
    assert await s.compare_and_set("k", None, 6, NOW) is False  # someone set it already
    assert await s.compare_and_set("k", 4, 6, NOW) is False
    assert await s.get("k") == 5
    assert await s.compare_and_set("k", 5, 6, NOW) is True
    assert await s.get("k") == 6


async def test_sweep_forgets_exactly_the_entries_at_or_before_now():
    s = MemoryTatStore(10, TOL)
    for i, tat in enumerate([NOW - 1, NOW, NOW + 1]):
        await s.compare_and_set(i, None, tat, NOW)
    assert await s.sweep(NOW) == 2
    assert len(s) == 1
    assert await s.get(2) == NOW + 1


async def test_full_table_first_drops_expired_entries():
    s = MemoryTatStore(8, TOL)
    for i in range(8):
        await s.compare_and_set(i, None, NOW + (i % 2), NOW)  # evens expire at NOW
    await s.compare_and_set("new", None, NOW + 5, NOW)
    assert len(s) == 5
    assert [await s.get(k) is not None for k in range(8)] == [False, True] * 4
    assert s.evicted == 0


async def test_full_table_evicts_unlimited_smallest_tat_first_never_limited():
    s = MemoryTatStore(16, TOL)
    # 4 limited keys (tat far in the future), 12 unlimited ones with increasing TATs.
    for i in range(4):
        await s.compare_and_set(("L", i), None, NOW + 10 * TOL, NOW)
    for i in range(12):
        await s.compare_and_set(i, None, NOW + 1 + i, NOW)
    await s.compare_and_set("new", None, NOW + 1, NOW)
    # low water = 16 - 2 = 14: the two smallest unlimited TATs (keys 0 and 1) went.
    assert await s.get(0) is None and await s.get(1) is None
    assert all([await s.get(i) is not None for i in range(2, 12)])
    assert all([s.is_limited(("L", i), NOW) for i in range(4)])
    assert await s.get("new") == NOW + 1
    assert s.evicted == 2


async def test_table_full_of_limited_keys_refuses_newcomers_and_keeps_them():
    s = MemoryTatStore(4, TOL)
    for i in range(4):
        await s.compare_and_set(i, None, NOW + TOL + (i + 1) * MS, NOW)  # limited for i+1 ms more
    with pytest.raises(StoreFull) as exc:
        await s.compare_and_set("new", None, NOW + 1, NOW)
    assert exc.value.wait_ns == 1 * MS  # when key 0 stops being limited
    # Known to be full: the next attempts are refused without a rescan, still no eviction.
    for _ in range(3):
        with pytest.raises(StoreFull):
            await s.compare_and_set("new2", None, NOW + 1, NOW + MS // 2)
    assert [await s.get(i) for i in range(4)] == [NOW + TOL + (i + 1) * MS for i in range(4)]
    # Existing keys still update (the limiter's own compare-and-set is never blocked).
    assert await s.compare_and_set(3, NOW + TOL + 4 * MS, NOW + TOL + 9 * MS, NOW) is True
    # Once key 0 is no longer limited, it can make room.
    await s.compare_and_set("new", None, NOW + MS + 1, NOW + MS)
    assert await s.get(0) is None
    assert await s.get("new") == NOW + MS + 1
    assert s.refused_full == 4


async def test_per_key_tolerance():
    tolerances = {"big": 10 * TOL}
    s = MemoryTatStore(2, lambda k: tolerances.get(k, TOL))
    await s.compare_and_set("big", None, NOW + 5 * TOL, NOW)  # within its own tolerance: not limited
    await s.compare_and_set("small", None, NOW + 5 * TOL, NOW)  # limited
    assert not s.is_limited("big", NOW) and s.is_limited("small", NOW)
    await s.compare_and_set("new", None, NOW + 1, NOW)
    assert await s.get("big") is None
    assert await s.get("small") == NOW + 5 * TOL


async def test_cap_is_never_exceeded():
    s = MemoryTatStore(100, TOL)
    for i in range(10_000):
        try:
            await s.compare_and_set(i, None, NOW + 1 + i % 50, NOW + i // 1000)
        except StoreFull:
            pass
        assert len(s) <= 100


def test_cap_must_be_positive():
    with pytest.raises(ValueError):
        MemoryTatStore(0, TOL)
