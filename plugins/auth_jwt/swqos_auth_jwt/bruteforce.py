"""Brute-force protection (threat T4): failed authentications counted per client address bucket.

Rules (defaults):
- after ``backoff_after`` (5) consecutive failures, every further attempt is refused at once,
  without looking at the credential, for ``base * 2**(failures - backoff_after)`` seconds (capped);
  RESOURCE_EXHAUSTED with a ``retry-after`` hint, because it is a rate limit on attempts, not a
  judgement of the credential (the architecture's status table);
- attempts refused that way are failures too, so a client that ignores the hint keeps
  doubling its wait, and ``ban_after`` (20) failures within ``ban_window_seconds`` (60) ban the
  bucket for ``ban_seconds`` (doubling per repeat offence, capped): PERMISSION_DENIED;
- a success clears the consecutive-failure count (the backoff), never a ban or the ban window;
- buckets are ``ClientAddress.key``: IPv4 /32, IPv6 /64.

Memory is bounded by ``max_entries``. Banned buckets live in their own table and are never
evicted before their ban ends; when the table is full, the least recently failing unbanned bucket
is dropped. If every slot holds a live ban, a new bucket's failure is not recorded (the per-IP
rate limiter still applies) rather than lifting a ban.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from swqos_core.errors import permission_denied, resource_exhausted

log = logging.getLogger("swqos.auth.bruteforce")

#: Repeat-offence memory: strikes (ban count) are forgotten after a day without failures.
STRIKE_MEMORY_SECONDS = 86_400.0


@dataclass
class BruteForceSettings:
    #: Consecutive failures after which further attempts are refused without verification.
    backoff_after: int = 5
    #: First backoff; doubles with every further failure.
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    #: Failures within the window that ban the address bucket.
    ban_after: int = 20
    ban_window_seconds: float = 60.0
    #: First ban; doubles per repeat offence (strikes), capped.
    ban_seconds: float = 600.0
    ban_max_seconds: float = 86_400.0
    #: Consecutive failures are forgotten after this long without a failure.
    forget_after_seconds: float = 600.0
    #: Hard cap on tracked buckets (banned ones included). ~100k entries is a few tens of MB.
    max_entries: int = 100_000

    def __post_init__(self) -> None:
        if not (1 <= self.backoff_after <= self.ban_after):
            raise ValueError("brute_force: need 1 <= backoff_after <= ban_after")
        if self.max_entries < 16:
            raise ValueError("brute_force.max_entries must be at least 16")
        for name in ("backoff_base_seconds", "backoff_max_seconds", "ban_window_seconds", "ban_seconds",
                     "ban_max_seconds", "forget_after_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"brute_force.{name} must be positive")


class _Entry:
    __slots__ = ("banned_until", "blocked_until", "failures", "last_failure", "strikes", "window")

    def __init__(self, window: int) -> None:
        self.failures = 0
        self.window: collections.deque[float] = collections.deque(maxlen=window)
        self.blocked_until = 0.0
        self.banned_until = 0.0
        self.strikes = 0
        self.last_failure = 0.0


class BruteForceGuard:
    def __init__(self, settings: BruteForceSettings, *, monotonic: Callable[[], float] = time.monotonic,
                 name: str = "auth") -> None:
        self.s = settings
        self.monotonic = monotonic
        self.name = name
        self._live: collections.OrderedDict[Hashable, _Entry] = collections.OrderedDict()
        self._banned: dict[Hashable, _Entry] = {}
        self.untracked = 0  # failures not recorded because every slot held a ban

    def __len__(self) -> int:
        return len(self._live) + len(self._banned)

    def _age(self, e: _Entry, now: float) -> None:
        quiet = now - e.last_failure
        if quiet > self.s.forget_after_seconds:
            e.failures = 0
        if quiet > STRIKE_MEMORY_SECONDS:
            e.strikes = 0

    def check(self, key: Hashable) -> None:
        """Before any verification: refuse a banned or backing-off bucket (raises a Rejection)."""
        now = self.monotonic()
        e = self._banned.get(key)
        if e is not None:
            if now < e.banned_until:
                raise permission_denied("too many failed authentications from this address; temporarily banned",
                                        label="bruteforce_ban")
            del self._banned[key]  # ban over: back to the ordinary table, strikes kept
            e.failures = 0
            e.window.clear()
            self._insert_live(key, e, now)
            return
        e = self._live.get(key)
        if e is None:
            return
        self._age(e, now)
        if now < e.blocked_until:
            # Refused without verification, and counted: ignoring the hint only makes it worse.
            self._fail(key, e, now)
            if key in self._banned:
                raise permission_denied("too many failed authentications from this address; temporarily banned",
                                        label="bruteforce_ban")
            raise resource_exhausted("too many failed authentications; retry later",
                                     retry_after=round(max(e.blocked_until - now, 0.001), 3),
                                     label="bruteforce_backoff")

    def failure(self, key: Hashable) -> None:
        """A credential from ``key`` was refused."""
        now = self.monotonic()
        if key in self._banned:
            return
        e = self._live.get(key)
        if e is None:
            e = _Entry(self.s.ban_after)
            if not self._insert_live(key, e, now):
                return
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
        self._live.move_to_end(key)
        s = self.s
        if len(e.window) >= s.ban_after and now - e.window[0] <= s.ban_window_seconds:
            e.banned_until = now + min(s.ban_seconds * (2 ** min(e.strikes, 20)), s.ban_max_seconds)
            e.strikes += 1
            e.blocked_until = 0.0
            del self._live[key]
            self._banned[key] = e
            log.warning("%s: address bucket banned for %.0f s after %d failures", self.name,
                        e.banned_until - now, len(e.window))
        elif e.failures >= s.backoff_after:
            e.blocked_until = now + min(s.backoff_base_seconds * (2 ** min(e.failures - s.backoff_after, 30)),
                                        s.backoff_max_seconds)

    def _insert_live(self, key: Hashable, e: _Entry, now: float) -> bool:
        if len(self) >= self.s.max_entries:
            self._make_room(now)
        if len(self) >= self.s.max_entries:
            self.untracked += 1
            if self.untracked & (self.untracked - 1) == 0:  # log at powers of two, not per request
                log.error("%s: brute-force table full of live bans (%d); failure not recorded", self.name,
                          len(self._banned))
            return False
        self._live[key] = e
        return True

    def _make_room(self, now: float) -> None:
        if self._live:
            self._live.popitem(last=False)  # least recently failing unbanned bucket
            return
        expired = [k for k, e in self._banned.items() if now >= e.banned_until]
        for k in expired:
            del self._banned[k]

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
        }
