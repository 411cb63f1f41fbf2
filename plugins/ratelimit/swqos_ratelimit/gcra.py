"""The generic cell rate algorithm (GCRA), with the semantics of Rust's ``governor``.

One number is stored per key: the *theoretical arrival time* (TAT), in integer nanoseconds of a
monotonic clock. A quota of ``count`` cells per ``period`` with burst ``b`` gives

* emission interval ``T = period / count`` (each admitted request costs one ``T``),
* tolerance ``tau = T * (b - 1)`` (how far the TAT may run ahead of now).

At time ``now``, with ``tat`` the stored value (or ``now`` for an unknown key)::

    refuse  if now < tat - tau        (retry after tat - tau - now)
    admit   otherwise, and store max(tat, now) + T

From idle this admits exactly ``b`` requests back to back (governor's ``max_burst``; redis-cell's
``max_burst`` argument admits one more, which is why we speak of the burst, never of DVT). A key
whose TAT is at or before ``now`` behaves exactly like an unknown key, so it can be forgotten.

Integers throughout: float nanoseconds would lose precision after ~104 days of uptime.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

NS_PER_S = 1_000_000_000

#: A clock returns monotonic integer nanoseconds. Tests inject a fake one.
Clock = Callable[[], int]
monotonic_clock: Clock = time.monotonic_ns


@dataclass(frozen=True, slots=True)
class Rate:
    """A quota compiled to integer nanoseconds, ready for :func:`check`."""

    interval_ns: int  # T
    tolerance_ns: int  # tau = T * (burst - 1)
    burst: int

    @classmethod
    def per(cls, count: float, period_s: float, burst: int) -> Rate:
        """``count`` cells every ``period_s`` seconds, at most ``burst`` back to back."""
        if not (count > 0 and math.isfinite(count)):
            raise ValueError(f"count must be a positive number, got {count!r}")
        if not (period_s > 0 and math.isfinite(period_s)):
            raise ValueError(f"period must be a positive number of seconds, got {period_s!r}")
        if not (isinstance(burst, int) and burst >= 1):
            raise ValueError(f"burst must be an integer of at least 1, got {burst!r}")
        interval = round(period_s * NS_PER_S / count)
        if interval < 1:
            raise ValueError(f"{count} per {period_s} s is faster than one per nanosecond")
        return cls(interval, interval * (burst - 1), burst)

    @property
    def per_second(self) -> float:
        return NS_PER_S / self.interval_ns


def check(tat: int | None, now: int, rate: Rate) -> tuple[bool, int]:
    """Decide one request of weight 1.

    Returns ``(True, new_tat)`` to admit (the caller stores ``new_tat``), or ``(False, wait_ns)``
    to refuse, where ``wait_ns > 0`` is the time after which the same request would be admitted.
    A refusal changes nothing: hammering a limited key does not push its TAT further out.
    """
    if tat is None or tat < now:
        return True, now + rate.interval_ns
    allow_at = tat - rate.tolerance_ns
    if now < allow_at:
        return False, allow_at - now
    return True, tat + rate.interval_ns


def is_limited(tat: int | None, now: int, rate_tolerance_ns: int) -> bool:
    """True when the next request for this key would be refused right now."""
    return tat is not None and tat - now > rate_tolerance_ns


def retry_after_seconds(wait_ns: int) -> float:
    """``wait_ns`` rounded *up* to the millisecond, in seconds: waiting that long is always enough."""
    return -(-wait_ns // 1_000_000) / 1000
