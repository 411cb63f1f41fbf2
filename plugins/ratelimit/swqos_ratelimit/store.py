"""Where the limiter keeps its one number per key (the TAT), behind a small interface.

:class:`TatStore` is what the limiter needs: read a key's TAT, and write a new one only if the
key still holds what was read (compare-and-set, as governor does with its ``AtomicU64``). That
is all a shared store needs to offer too: a Redis store would implement ``compare_and_set`` as a
short Lua script (``GET``, compare, ``SET key new PX ttl``) with ``ttl = new - now``, which also
gives it expiry for free. A shared store needs a shared time base as well (the Redis server's
``TIME``), which is why ``now`` is an argument everywhere rather than read inside.

:class:`MemoryTatStore` is the in-process implementation: a dict of key -> TAT with a hard cap.
Its eviction rules (the reason this module is more than a dict):

1. Expired entries (``tat <= now``) are indistinguishable from absent keys, so dropping them
   loses nothing. They go first, on a timer (:meth:`sweep`) and whenever the table is full.
2. If that is not enough, entries that are *not limited* are evicted, smallest TAT first (the
   ones closest to fresh, so the least state is lost), down to 7/8 of the cap.
3. An entry that is limited (``tat - now > tolerance``: its next request would be refused) is
   never evicted and never overwritten by anything but the limiter's own compare-and-set. A
   flood of fresh keys therefore cannot reset a limited address.
4. If the table is full of limited entries, a *new* key is refused (:class:`StoreFull`, which
   the limiter turns into RESOURCE_EXHAUSTED) until the first of them stops being limited. The
   store never grows past its cap: refusing unknown newcomers is the fail-closed choice.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Protocol, runtime_checkable

#: Address keys are ints (IPv4 /32, tagged IPv6 /64) or short strings for non-IP transports;
#: trader keys are the verified ``sub``.
Key = int | str


class StoreFull(Exception):
    """No room for a new key without evicting a limited one."""

    def __init__(self, wait_ns: int) -> None:
        super().__init__("limiter table is full")
        #: When room is expected (the earliest time a tracked key stops being limited).
        self.wait_ns = max(1, wait_ns)


@runtime_checkable
class TatStore(Protocol):
    """Theoretical arrival times per key, in the limiter's clock (integer nanoseconds)."""

    async def get(self, key: Key) -> int | None:
        """The stored TAT, or None for an unknown key."""
        ...

    async def compare_and_set(self, key: Key, expected: int | None, new: int, now: int) -> bool:
        """Store ``new`` if the key still holds ``expected`` (None: still absent). False on a race.

        Raises :class:`StoreFull` when the key is new and the store cannot make room.
        """
        ...

    async def sweep(self, now: int) -> int:
        """Forget entries that are equivalent to absent (``tat <= now``); return how many."""
        ...

    def __len__(self) -> int:
        """Number of tracked keys (approximate for a shared store)."""
        ...


class MemoryTatStore:
    """One process's table: ``dict[key, tat]`` with a hard cap and limited-key-safe eviction.

    ``tolerance_ns`` is the quota's tolerance (tau), or a function of the key when keys have
    different quotas (per-trader overrides); it decides which entries count as limited.
    Runs on one asyncio loop: no method awaits, so each call is atomic on that loop.
    """

    def __init__(self, cap: int, tolerance_ns: int | Callable[[Key], int], *, name: str = "store") -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.cap = cap
        self.name = name
        self._low_water = cap - max(1, cap // 8)
        self._tolerance = tolerance_ns
        self._tat: dict[Key, int] = {}
        self._full_until = 0  # while now < this, the table is known to hold only limited keys
        self.evicted = 0
        self.refused_full = 0

    def __len__(self) -> int:
        return len(self._tat)

    async def get(self, key: Key) -> int | None:
        return self._tat.get(key)

    async def compare_and_set(self, key: Key, expected: int | None, new: int, now: int) -> bool:
        table = self._tat
        current = table.get(key)
        if current != expected:
            return False
        if current is None and len(table) >= self.cap:
            self._make_room(now)
        table[key] = new
        return True

    async def sweep(self, now: int) -> int:
        return self._drop_expired(now)

    # --- synchronous access for the limiter's in-process fast path (no await: atomic) -----
    @property
    def table(self) -> dict[Key, int]:
        return self._tat

    def ensure_room(self, now: int) -> None:
        """Make room for one new key or raise :class:`StoreFull`; writes nothing."""
        if len(self._tat) >= self.cap:
            self._make_room(now)

    def is_limited(self, key: Key, now: int) -> bool:
        tat = self._tat.get(key)
        return tat is not None and tat - now > self._tolerance_of(key)

    # --- eviction --------------------------------------------------------------------------

    def _tolerance_of(self, key: Key) -> int:
        tol = self._tolerance
        return tol if isinstance(tol, int) else tol(key)

    def _drop_expired(self, now: int) -> int:
        table = self._tat
        expired = [k for k, tat in table.items() if tat <= now]
        for k in expired:
            del table[k]
        if expired:
            self._full_until = 0
        return len(expired)

    def _unlimited_tats(self, now: int):
        tol = self._tolerance
        if isinstance(tol, int):
            limit = now + tol
            return (tat for tat in self._tat.values() if tat <= limit)
        return (tat for k, tat in self._tat.items() if tat - now <= tol(k))

    def _is_unlimited(self, key: Key, tat: int, now: int) -> bool:
        return tat - now <= self._tolerance_of(key)

    def _make_room(self, now: int) -> None:
        if now < self._full_until:
            self.refused_full += 1
            raise StoreFull(self._full_until - now)
        self._drop_expired(now)
        table = self._tat
        excess = len(table) - self._low_water
        if excess > 0:
            # The cut-off TAT of the `excess` smallest unlimited entries; ties may take a few more.
            smallest = heapq.nsmallest(excess, self._unlimited_tats(now))
            if smallest:
                cutoff = smallest[-1]
                victims = [k for k, tat in table.items() if tat <= cutoff and self._is_unlimited(k, tat, now)]
                for k in victims:
                    del table[k]
                self.evicted += len(victims)
        if len(table) >= self.cap:
            # Everything left is limited. Refuse newcomers until the first one stops being limited,
            # without rescanning on every request (a flood would otherwise cost O(cap) each).
            self._full_until = min(tat - self._tolerance_of(k) for k, tat in table.items())
            self.refused_full += 1
            raise StoreFull(self._full_until - now)
