"""The one brute-force guard (threat T4): failed authentications counted per key.

A key is whatever the caller counts by: a client address bucket (``ClientAddress.key``), an
address aggregate, an API token id. Rules (defaults):

- after ``backoff_after`` (5) consecutive failures, every further attempt is refused at once,
  without looking at the credential, for ``base * 2**(failures - backoff_after)`` seconds (capped);
  RESOURCE_EXHAUSTED with a ``retry-after`` hint, because it is a rate limit on attempts, not a
  judgement of the credential;
- attempts refused that way are failures too, so a client that ignores the hint keeps doubling its
  wait, and ``ban_after`` (20) failures within ``ban_window_seconds`` (60) ban the key for
  ``ban_seconds`` (doubling per repeat offence, capped): PERMISSION_DENIED;
- a success clears the consecutive-failure count (the backoff), never a ban or the ban window;
- an IPv6 /64 key (``ClientAddress.key``) also counts against its /56 and /48, each with its own
  threshold (``ban_after_56``, ``ban_after_48``): a /48 holder rotating through 65,536 /64s is
  banned as a whole after ``ban_after_48`` failures (aggregates ban, they never back off);
- with a shared state store (``store.shared``: redis, sqlite), every failure is also counted
  there (one round trip, in the background) and a ban made by any replica is refused here within
  one sync interval; the local table still decides backoff and local bans at once.

Memory is bounded by ``max_entries``, and the bound never forgets evidence: an entry with a failure
in the last ``max(forget_after_seconds, ban_window_seconds)`` or a live ban is never evicted (that
was ban evasion: 19 failures, a flood of other keys, and the 20th failure started from zero). Only
entries whose failures have aged out (or whose ban ended) make room. When the table is full of
protected entries a new key is refused before any verification (RESOURCE_EXHAUSTED,
``bruteforce_full``), counted in :meth:`BruteForceGuard.snapshot` and logged at powers of two.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from swqos_core.errors import Rejection, permission_denied, resource_exhausted
from swqos_core.store import FailureRule, StateStore

log = logging.getLogger("swqos.auth.bruteforce")

#: Repeat-offence memory: strikes (ban count) are forgotten after a day without failures.
STRIKE_MEMORY_SECONDS = 86_400.0
#: How long a refused new key is told to wait when the table is full.
FULL_RETRY_AFTER_SECONDS = 1.0
#: A full table is swept for ended bans at most this often (the sweep is O(bans)).
BAN_SWEEP_INTERVAL_SECONDS = 1.0


@dataclass
class BruteForceSettings:
    #: Consecutive failures after which further attempts are refused without verification.
    backoff_after: int = 5
    #: First backoff; doubles with every further failure.
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    #: Failures within the window that ban the key.
    ban_after: int = 20
    ban_window_seconds: float = 60.0
    #: First ban; doubles per repeat offence (strikes), capped.
    ban_seconds: float = 600.0
    ban_max_seconds: float = 86_400.0
    #: Consecutive failures are forgotten after this long without a failure.
    forget_after_seconds: float = 600.0
    #: Hard cap on tracked keys (banned ones included); about 310 bytes each with one failure,
    #: 900 with 19 (measured with tracemalloc): at most about 90 MB at the default cap.
    max_entries: int = 100_000
    #: Failures within the window that ban a whole IPv6 /56 and /48 (0: not counted).
    ban_after_56: int = 40
    ban_after_48: int = 80

    def __post_init__(self) -> None:
        if not (1 <= self.backoff_after <= self.ban_after):
            raise ValueError("brute_force: need 1 <= backoff_after <= ban_after")
        for name in ("ban_after_56", "ban_after_48"):
            value = getattr(self, name)
            if value != 0 and value < self.ban_after:
                raise ValueError(f"brute_force.{name} must be 0 (off) or at least ban_after")
        if self.max_entries < 16:
            raise ValueError("brute_force.max_entries must be at least 16")
        for name in ("backoff_base_seconds", "backoff_max_seconds", "ban_window_seconds", "ban_seconds",
                     "ban_max_seconds", "forget_after_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"brute_force.{name} must be positive")

    @property
    def memory_seconds(self) -> float:
        """How long a failure keeps its entry out of eviction."""
        return max(self.forget_after_seconds, self.ban_window_seconds)

    def rule(self, ban_after: int | None = None) -> FailureRule:
        return FailureRule(ban_after or self.ban_after, self.ban_window_seconds, self.ban_seconds,
                           self.ban_max_seconds, self.memory_seconds)


_V6_TAG = 1 << 128
_LOW64 = (1 << 64) - 1


def aggregate_keys(key: Hashable, s: BruteForceSettings) -> list[tuple[tuple[str, int], int]]:
    """The /56 and /48 of an IPv6 /64 key (``swqos_core.net.address_key``: the /64 prefix with
    bit 128 set), with their ban thresholds; nothing for any other key."""
    if not (isinstance(key, int) and key >> 128 == 1):
        return []
    p64 = key & _LOW64
    out = []
    if s.ban_after_56:
        out.append((("v6/56", p64 >> 8), s.ban_after_56))
    if s.ban_after_48:
        out.append((("v6/48", p64 >> 16), s.ban_after_48))
    return out


def store_key(name: str, key: Hashable) -> str:
    """``bf:<guard>:<key>``; ints, strings and tuples of them spell the same in every process."""
    if isinstance(key, tuple):
        return f"bf:{name}:" + "/".join(str(k) for k in key)
    return f"bf:{name}:{key}"


class _Entry:
    # A list, not a deque: a deque allocates a 64-slot block (about 600 bytes) for one failure.
    __slots__ = ("aggregate", "banned_until", "blocked_until", "failures", "last_failure", "limit", "strikes",
                 "window")

    def __init__(self, window: int, aggregate: bool = False) -> None:
        self.aggregate = aggregate  # an address range: bans, never backs off
        self.limit = window  # failure times kept: the ban threshold
        self.failures = 0
        self.window: list[float] = []
        self.blocked_until = 0.0
        self.banned_until = 0.0
        self.strikes = 0
        self.last_failure = float("-inf")


class BruteForceGuard:
    """Per-key failure counting with backoff and bans; synchronous and in-process.

    ``_live`` is ordered by last failure (oldest first), so whether any entry can make room is
    answered by looking at the first one: O(1) per new key even when the table is full.
    """

    def __init__(self, settings: BruteForceSettings, *, monotonic: Callable[[], float] = time.monotonic,
                 name: str = "auth", store: StateStore | None = None) -> None:
        self.s = settings
        self.monotonic = monotonic
        self.name = name
        #: Only a shared store adds anything: the in-process one holds what this table holds.
        self.store = store if store is not None and store.shared else None
        self._live: collections.OrderedDict[Hashable, _Entry] = collections.OrderedDict()
        self._banned: dict[Hashable, _Entry] = {}
        self._last_sweep = float("-inf")
        #: Failures of new keys not recorded because the table was full of protected entries.
        self.untracked = 0
        #: Attempts from new keys refused (before verification) because the table was full.
        self.refused = 0

    def __len__(self) -> int:
        return len(self._live) + len(self._banned)

    def _age(self, e: _Entry, now: float) -> None:
        quiet = now - e.last_failure
        if quiet > self.s.forget_after_seconds:
            e.failures = 0
        if quiet > STRIKE_MEMORY_SECONDS:
            e.strikes = 0

    def check(self, key: Hashable) -> None:
        """Before any verification: refuse a banned or backing-off key, or a new key while the
        table is full of evidence (raises a Rejection)."""
        now = self.monotonic()
        e = self._banned.get(key)
        if e is not None:
            if now < e.banned_until:
                raise permission_denied("too many failed authentications from this address; temporarily banned",
                                        label="bruteforce_ban")
            del self._banned[key]  # ban over: back to the ordinary table, strikes kept
            self._release(key, e)
        aggregates = aggregate_keys(key, self.s)
        for agg, _ in aggregates:
            b = self._banned.get(agg)
            if b is not None and now < b.banned_until:
                raise permission_denied("too many failed authentications from this address range; temporarily banned",
                                        label="bruteforce_ban_range")
        if self.store is not None:
            for k in (key, *(a for a, _ in aggregates)):
                if self.store.ban_remaining(store_key(self.name, k)) > 0:
                    raise permission_denied("too many failed authentications from this address; temporarily banned",
                                            label="bruteforce_ban")
        e = self._live.get(key)
        if e is None:
            if len(self) >= self.s.max_entries and not self._room(now):
                self.refused += 1
                if self.refused & (self.refused - 1) == 0:  # log at powers of two, not per request
                    log.error("%s: brute-force table full (%d entries with recent failures or bans); "
                              "new keys refused (%d so far)", self.name, len(self), self.refused)
                raise resource_exhausted("authentication failure table is full; retry later",
                                         retry_after=FULL_RETRY_AFTER_SECONDS, label="bruteforce_full")
            return
        self._age(e, now)
        if now < e.blocked_until:
            # Refused without verification, and counted (here, in the aggregates and in a shared
            # store): ignoring the hint only makes it worse.
            self.failure(key)
            if key in self._banned:
                raise permission_denied("too many failed authentications from this address; temporarily banned",
                                        label="bruteforce_ban")
            raise resource_exhausted("too many failed authentications; retry later",
                                     retry_after=round(max(e.blocked_until - now, 0.001), 3),
                                     label="bruteforce_backoff")

    def failure(self, key: Hashable) -> None:
        """A credential from ``key`` was refused."""
        now = self.monotonic()
        aggregates = aggregate_keys(key, self.s)
        if self.store is not None:
            self.store.report_failures([(store_key(self.name, key), self.s.rule()),
                                        *((store_key(self.name, a), self.s.rule(n)) for a, n in aggregates)])
        for agg, threshold in aggregates:
            self._count(agg, now, threshold, aggregate=True)
        self._count(key, now, self.s.ban_after, aggregate=False)

    def _count(self, key: Hashable, now: float, threshold: int, *, aggregate: bool) -> None:
        e = self._banned.get(key)
        if e is not None:
            if now < e.banned_until:
                return
            del self._banned[key]
            self._release(key, e)
        e = self._live.get(key)
        if e is None:
            if len(self) >= self.s.max_entries and not self._room(now):
                self.untracked += 1
                if self.untracked & (self.untracked - 1) == 0:
                    log.error("%s: brute-force table full (%d entries with recent failures or bans); "
                              "failure of a new key not recorded (%d so far)", self.name, len(self),
                              self.untracked)
                return
            e = _Entry(threshold, aggregate=aggregate)
            self._live[key] = e
        else:
            self._age(e, now)
        self._fail(key, e, now)

    def success(self, key: Hashable) -> None:
        """A credential from ``key`` was accepted: clears the backoff, never a ban or the window."""
        e = self._live.get(key)
        if e is not None:
            e.failures = 0
            e.blocked_until = 0.0

    def _fail(self, key: Hashable, e: _Entry, now: float) -> None:
        e.failures += 1
        e.last_failure = now
        e.window.append(now)
        if len(e.window) > e.limit:
            del e.window[0]
        self._live.move_to_end(key)
        s = self.s
        if len(e.window) >= e.limit and now - e.window[0] <= s.ban_window_seconds:
            e.banned_until = now + min(s.ban_seconds * (2 ** min(e.strikes, 20)), s.ban_max_seconds)
            e.strikes += 1
            e.blocked_until = 0.0
            del self._live[key]
            self._banned[key] = e
            log.warning("%s: %s banned for %.0f s after %d failures", self.name,
                        "address range" if e.aggregate else "key", e.banned_until - now, len(e.window))
        elif e.failures >= s.backoff_after and not e.aggregate:
            e.blocked_until = now + min(s.backoff_base_seconds * (2 ** min(e.failures - s.backoff_after, 30)),
                                        s.backoff_max_seconds)

    def _release(self, key: Hashable, e: _Entry) -> None:
        """A ban ended: keep the strikes, drop the evidence. The entry goes to the front of the
        eviction order: it holds nothing that eviction must keep."""
        e.failures = 0
        e.window.clear()
        e.blocked_until = 0.0
        self._live[key] = e
        self._live.move_to_end(key, last=False)

    def _evictable(self, e: _Entry, now: float) -> bool:
        return now - e.last_failure > self.s.memory_seconds or (e.failures == 0 and not e.window)

    def _room(self, now: float) -> bool:
        """Free one slot if an entry without evidence exists; False when every entry is protected."""
        if self._live:
            key, e = next(iter(self._live.items()))
            if self._evictable(e, now):
                del self._live[key]
                return True
        if now - self._last_sweep >= BAN_SWEEP_INTERVAL_SECONDS:
            self._last_sweep = now
            ended = [k for k, b in self._banned.items() if now >= b.banned_until]
            for k in ended:
                del self._banned[k]
            return bool(ended)
        return False

    def verdict(self, key: Hashable) -> Rejection | None:
        """What :meth:`check` would raise for ``key`` (backoff or ban), or None; raises nothing.

        For authenticators that must not lock out a credential already proven valid: they refuse
        only the attempts that would cost a verification.
        """
        try:
            self.check(key)
        except Rejection as exc:
            return exc
        return None

    def banned(self, key: Hashable) -> bool:
        e = self._banned.get(key)
        return e is not None and self.monotonic() < e.banned_until

    def snapshot(self) -> dict[str, int]:
        now = self.monotonic()
        return {
            "tracked": len(self),
            "banned": sum(1 for e in self._banned.values() if now < e.banned_until),
            "backing_off": sum(1 for e in self._live.values() if now < e.blocked_until),
            "untracked_failures": self.untracked,
            "refused_new_keys": self.refused,
        }
