"""A bounded map whose entries carry their own expiry (verified JWTs, verified API tokens)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ExpiringCache(Generic[V]):
    """LRU-bounded; an entry is returned only while ``now < until``. Not thread-safe: it lives on
    the event loop, like every caller of it."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError("cache size must be >= 0")
        self.max_entries = max_entries
        self._d: collections.OrderedDict[Hashable, tuple[float, V]] = collections.OrderedDict()
        #: Lookups answered from / missed by the cache (exported as metrics by the host-proxy).
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: Hashable, now: float) -> V | None:
        item = self._d.get(key)
        if item is None:
            self.misses += 1
            return None
        until, value = item
        if now >= until:
            del self._d[key]
            self.misses += 1
            return None
        self._d.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: V, until: float, now: float) -> None:
        if self.max_entries == 0 or until <= now:
            return
        self._d[key] = (until, value)
        self._d.move_to_end(key)
        while len(self._d) > self.max_entries:
            self._d.popitem(last=False)

    def purge(self, drop: Callable[[V], bool]) -> int:
        """Remove every entry for which ``drop(value)`` is true; returns how many."""
        doomed = [k for k, (_, v) in self._d.items() if drop(v)]
        for k in doomed:
            del self._d[k]
        return len(doomed)

    def clear(self) -> None:
        self._d.clear()
