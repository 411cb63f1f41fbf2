"""GCRA arithmetic with exact integers: admit/refuse sequences, retry-after values, burst edges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swqos_ratelimit.gcra import NS_PER_S, Rate, check, is_limited, retry_after_seconds

MS = 1_000_000


def run(rate: Rate, times: list[int]) -> list[bool | int]:
    """Feed requests at the given times; return True for admits and the wait (ns) for refusals."""
    tat = None
    out: list[bool | int] = []
    for t in times:
        ok, value = check(tat, t, rate)
        if ok:
            tat = value
            out.append(True)
        else:
            out.append(value)
    return out


def test_rate_compiles_to_integer_nanoseconds():
    r = Rate.per(10, 1.0, 5)
    assert (r.interval_ns, r.tolerance_ns, r.burst) == (100 * MS, 400 * MS, 5)
    r = Rate.per(8, 60.0, 8)
    assert (r.interval_ns, r.tolerance_ns) == (7_500 * MS, 7 * 7_500 * MS)


def test_burst_of_five_admits_exactly_five_back_to_back_like_governor():
    r = Rate.per(10, 1.0, 5)  # T = 100 ms
    assert run(r, [0] * 7) == [True] * 5 + [100 * MS, 100 * MS]


def test_next_cell_exactly_one_interval_later_not_a_nanosecond_before():
    r = Rate.per(10, 1.0, 5)
    assert run(r, [0] * 5 + [100 * MS - 1, 100 * MS, 100 * MS]) == [True] * 5 + [1, True, 100 * MS]


def test_refusals_do_not_push_the_tat_out():
    r = Rate.per(10, 1.0, 1)
    # Hammering while limited must not delay the next admission.
    assert run(r, [0, 10 * MS, 20 * MS, 50 * MS, 99 * MS, 100 * MS]) == [
        True, 90 * MS, 80 * MS, 50 * MS, 1 * MS, True]


def test_steady_rate_at_the_interval_is_always_admitted():
    r = Rate.per(10, 1.0, 1)
    assert run(r, [i * 100 * MS for i in range(50)]) == [True] * 50


def test_idle_refills_the_whole_burst_and_no_more():
    r = Rate.per(10, 1.0, 3)
    seq = [0, 0, 0, 0] + [10 * NS_PER_S] * 4
    assert run(r, seq) == [True, True, True, 100 * MS, True, True, True, 100 * MS]


def test_partial_refill():
    r = Rate.per(10, 1.0, 4)
    # 4 at t=0 -> tat = 400ms. At 250 ms, 2.5 cells refilled: 2 admitted, the third waits 50 ms.
    assert run(r, [0] * 4 + [250 * MS] * 3) == [True] * 4 + [True, True, 50 * MS]


def test_burst_of_one_is_a_strict_interval():
    r = Rate.per(8, 60.0, 1)
    assert run(r, [0, 1, 7_500 * MS - 1, 7_500 * MS]) == [True, 7_500 * MS - 1, 1, True]


def test_is_limited_matches_check():
    r = Rate.per(10, 1.0, 2)
    tat = None
    for _ in range(2):
        tat = check(tat, 0, r)[1]
    assert is_limited(tat, 0, r.tolerance_ns)
    assert check(tat, 0, r)[0] is False
    assert not is_limited(tat, 100 * MS, r.tolerance_ns)
    assert not is_limited(None, 0, r.tolerance_ns)


def test_retry_after_rounds_up_to_the_millisecond():
    assert retry_after_seconds(1) == 0.001
    assert retry_after_seconds(MS) == 0.001
    assert retry_after_seconds(MS + 1) == 0.002
    assert retry_after_seconds(7_500 * MS) == 7.5


@pytest.mark.parametrize(("count", "period", "burst"), [
    (0, 1.0, 1), (-1, 1.0, 1), (1, 0.0, 1), (1, -1.0, 1), (1, 1.0, 0), (float("inf"), 1.0, 1),
    (float("nan"), 1.0, 1), (1, float("inf"), 1), (1e12, 1.0, 1), (1, 1.0, 1.5),
])
def test_invalid_quotas_are_refused(count, period, burst):
    with pytest.raises(ValueError):
        Rate.per(count, period, burst)


@given(
    count=st.integers(1, 1000), period_ms=st.integers(1, 120_000), burst=st.integers(1, 50),
    gaps=st.lists(st.integers(0, 2_000 * MS), min_size=1, max_size=200),
)
def test_never_more_than_burst_plus_elapsed_over_interval(count, period_ms, burst, gaps):
    """The GCRA bound: in any window [a, b] at most burst + (b - a) / T requests are admitted."""
    r = Rate.per(count, period_ms / 1000, burst)
    times, t = [], 0
    for g in gaps:
        t += g
        times.append(t)
    admitted = [ti for ti, res in zip(times, run(r, times), strict=True) if res is True]
    for i, a in enumerate(admitted):
        for j in range(i, len(admitted)):
            n = j - i + 1
            assert n <= burst + (admitted[j] - a) // r.interval_ns


@given(burst=st.integers(1, 100), count=st.integers(1, 100))
def test_from_idle_exactly_burst_pass(burst, count):
    r = Rate.per(count, 1.0, burst)
    res = run(r, [0] * (burst + 3))
    assert res[:burst] == [True] * burst
    assert all(x == r.interval_ns for x in res[burst:])


@given(gaps=st.lists(st.integers(0, 500 * MS), min_size=1, max_size=100))
def test_waiting_the_retry_after_is_always_enough(gaps):
    r = Rate.per(7, 1.0, 3)
    tat, t = None, 0
    for g in gaps:
        t += g
        ok, value = check(tat, t, r)
        if ok:
            tat = value
            continue
        wait = round(retry_after_seconds(value) * NS_PER_S)
        assert wait >= value
        assert check(tat, t + wait, r)[0] is True
        assert check(tat, t + value - 1, r)[0] is False
