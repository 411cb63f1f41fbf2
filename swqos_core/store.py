"""The state-store layer: where limits, failure counters, bans and admin changes live.

Exactly one store is selected per host-proxy (``[pipeline] store = "memory"``, the default;
``swqos-state`` adds ``sqlite`` and ``redis``), built before every other layer and handed to
their factories as ``ctx.store``. The operations are shaped so that a call costs the store one
round trip:

- :meth:`StateStore.take` decides several GCRA cells at once (an address and its /56 and /48,
  the handshake quota, the trader's quotas), each with its own rate, and consumes one from each
  only if all admit;
- :meth:`StateStore.record_failures` counts one failed authentication under several keys and
  returns each key's ban state;
- policy records (:class:`PolicyRecord`) hold every admin change (a revoked trader, an allowlist,
  a quota override) with who made it and when; :meth:`StateStore.subscribe` delivers each record
  to its owner at start and whenever any replica changes one.

The synchronous lookups a request needs (is this key banned? is this trader revoked?) never wait
for the network: a shared store keeps a local mirror (swqos_state.sync), at most one sync
interval behind, and halts signing (NOT_SERVING, UNAVAILABLE) once the mirror cannot be refreshed
for ``grace_seconds``, unless the operator chose the documented degraded mode.

:class:`MemoryStateStore` is the in-process store: nothing survives a restart, nothing is shared.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

log = logging.getLogger("swqos.store")

#: Format name and newest version of ``swqos state export`` documents.
EXPORT_FORMAT = "swqos-state"
EXPORT_VERSION = 1
#: Largest JSON value of one policy record, in characters (an allowlist of 1,024 CIDRs fits).
MAX_POLICY_VALUE_CHARS = 128 * 1024
MAX_POLICY_KEY_CHARS = 512

class StoreUnavailable(Exception):
    """The store could not answer (unreachable, timed out, out of memory). Callers fail closed or
    fall back to a documented per-replica behaviour; the message never holds a credential."""


class Cell(NamedTuple):
    """One GCRA cell to take: ``key`` (namespaced, ``rl:address_rate:...``), its emission interval
    and tolerance in integer nanoseconds, and the limit's label for a refusal. (Immutable tuples:
    a request builds several, and a frozen dataclass costs several times more to build.)"""

    key: str
    interval_ns: int
    tolerance_ns: int
    label: str


class Taken(NamedTuple):
    """The answer of :meth:`StateStore.take`: admitted (every cell consumed), or refused by
    ``label`` with ``wait_ns`` until the same request would pass (nothing consumed). ``full``: refused
    because a new key found no room (the table is full of limited keys)."""

    ok: bool
    label: str | None = None
    wait_ns: int = 0
    full: bool = False


#: Every admitted take answers the same (immutable) Taken.
_ADMITTED = Taken(True)


@dataclass(frozen=True, slots=True)
class FailureRule:
    """When failures under one key become a ban: ``ban_after`` within ``window_seconds`` ban for
    ``ban_seconds``, doubled per earlier ban (strikes, remembered for a day), capped."""

    ban_after: int
    window_seconds: float
    ban_seconds: float
    ban_max_seconds: float
    #: How long a key's failures are kept (at least the window).
    forget_after_seconds: float


@dataclass(frozen=True, slots=True)
class FailureState:
    """One key's state after a recorded failure: failures in the window, seconds of ban left (0: not
    banned), and how many bans it has had."""

    failures: int
    ban_remaining: float
    strikes: int


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """An admin change. ``value`` is JSON (``None``: the record was cleared, kept as a tombstone so
    every replica learns it). ``version`` orders changes across the fleet."""

    namespace: str
    key: str
    value: Any
    actor: str
    at: float  # unix seconds
    version: int

    def as_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "key": self.key, "value": self.value, "actor": self.actor,
                "at": self.at, "version": self.version}


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """For health, metrics and ``/v1/status``."""

    name: str
    available: bool
    detail: str
    degraded: bool = False
    fallbacks: int = 0
    sync_failures: int = 0
    mirror_bans: int = 0
    policy_records: int = 0


PolicyCallback = Callable[[PolicyRecord], None]


@runtime_checkable
class StateStore(Protocol):
    """What the limiter, the brute-force guard and the admin policy keep their state in."""

    name: str
    #: Other processes read and write the same state (redis; sqlite when several processes
    #: share one file): failures are counted there and bans mirrored from there.
    shared: bool
    #: Replicas sharing the store as the operator configured it: when the store fails, rate
    #: limits fall back to each replica's own table with every quota divided by this.
    replicas: int

    async def start(self) -> None:
        """Connect, check the schema, load every policy record and deliver it to its subscribers.
        Raise :class:`~swqos_core.errors.ConfigError` to stop startup (naming the file or URL)."""
        ...

    async def close(self) -> None: ...

    async def take(self, cells: Sequence[Cell]) -> Taken:
        """All or nothing: admit when every cell admits, then consume one of each. One round trip.
        Raises :class:`StoreUnavailable`."""
        ...

    async def record_failures(self, items: Sequence[tuple[str, FailureRule]]) -> list[FailureState]:
        """Count one failure under each key with its rule; return each key's state. One round
        trip. Raises :class:`StoreUnavailable`."""
        ...

    def report_failures(self, items: Sequence[tuple[str, FailureRule]]) -> None:
        """Synchronous hand-off of :meth:`record_failures` for code on the request path: queued
        (bounded) and sent in the background; a ban that results reaches :meth:`ban_remaining`."""
        ...

    def ban_remaining(self, key: str) -> float:
        """Seconds of ban left for ``key`` as last known here (0: none). Never waits."""
        ...

    async def put_policy(self, namespace: str, key: str, value: Any, actor: str) -> PolicyRecord:
        """Persist an admin change durably (``value`` None clears it), deliver it to this process's
        subscribers at once and to the other replicas' within one sync interval."""
        ...

    async def policy_records(self, namespace: str | None = None) -> list[PolicyRecord]:
        """Every current record (tombstones excluded), oldest version first."""
        ...

    def subscribe(self, namespace: str, callback: PolicyCallback) -> None:
        """Call ``callback(record)`` for every record of ``namespace``: at :meth:`start` and on every
        later change (tombstones included). Runs on the event loop; must not block."""
        ...

    def status(self) -> StoreStatus: ...

    async def export_state(self) -> dict[str, Any]:
        """A JSON document (``swqos state export``): the policy records and live bans."""
        ...

    async def import_state(self, policy: Sequence[Mapping[str, Any]], bans: Sequence[Mapping[str, Any]],
                           actor: str) -> int:
        """Write records and bans that ``swqos state import`` validated; returns how many."""
        ...


def check_policy_item(namespace: str, key: str, value: Any) -> None:
    import json

    if not (0 < len(namespace) <= 64 and namespace.replace(".", "").replace("_", "").isalnum()):
        raise ValueError(f"namespace {namespace[:70]!r}: letters, digits, '.' and '_' only, at most 64")
    if not 0 < len(key) <= MAX_POLICY_KEY_CHARS or any(ord(c) < 0x20 for c in key):
        raise ValueError(f"key {key[:70]!r}: 1 to {MAX_POLICY_KEY_CHARS} printable characters")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError(f"value of {namespace}/{key[:70]} is not plain JSON") from None
    if len(text) > MAX_POLICY_VALUE_CHARS:
        raise ValueError(f"value of {namespace}/{key[:70]} is larger than {MAX_POLICY_VALUE_CHARS} characters")


def export_document(store_name: str, records: Iterable[PolicyRecord],
                    bans: Iterable[tuple[str, float, int]]) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported_at": round(time.time(), 3),
        "store": store_name,
        "policy": [r.as_json() for r in records],
        "bans": [{"key": k, "remaining_seconds": round(rem, 3), "strikes": s} for k, rem, s in bans],
    }


def ban_seconds(rule: FailureRule, strikes_before: int) -> float:
    """The ban a key gets when it already had ``strikes_before`` bans (the same in every store)."""
    return min(rule.ban_seconds * (2 ** min(strikes_before, 20)), rule.ban_max_seconds)


# --- the in-process store ----------------------------------------------------------------------


@dataclass
class MemorySettings:
    """``[layers.store.memory]``"""

    #: GCRA cells kept at most (limited ones are never evicted; a new key is refused instead).
    max_cells: int = 400_000
    #: Keys with failures kept at most (same rule).
    max_failure_keys: int = 100_000
    #: Admin policy records kept at most.
    max_policy_records: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_cells", "max_failure_keys", "max_policy_records"):
            if not 16 <= getattr(self, name) <= 50_000_000:
                raise ValueError(f"{name} must be between 16 and 50000000")


class CellTable:
    """GCRA cells in this process's memory, bounded: the decision of :meth:`StateStore.take` for
    the memory store, and for a sqlite file that one process owns. Not thread-safe (one loop).

    A cell is ``key -> (tat, tolerance)`` in integer nanoseconds of ``clock_ns``. When a new key
    finds the table full, expired cells go first, then unlimited ones (a cell with a burst left
    is as good as a fresh one); a table full of limited cells refuses new keys (``full``) and
    never forgets a limited one.
    """

    def __init__(self, max_cells: int, clock_ns: Callable[[], int]) -> None:
        self.max_cells = max_cells
        self.clock_ns = clock_ns
        self.cells: dict[str, tuple[int, int]] = {}
        self.refused_full = 0
        self._full_until = 0

    def __len__(self) -> int:
        return len(self.cells)

    def take(self, cells: Sequence[Cell]) -> Taken:
        now = self.clock_ns()
        table = self.cells
        worst: tuple[int, str] | None = None
        plan: list[tuple[Cell, int]] = []
        first_new: Cell | None = None
        new = 0
        for c in cells:
            held = table.get(c.key)
            if held is None:
                new += 1
                first_new = first_new or c
            tat = now if held is None or held[0] < now else held[0]
            allow_at = tat - c.tolerance_ns
            if now < allow_at:
                if worst is None or allow_at - now > worst[0]:
                    worst = (allow_at - now, c.label)
            else:
                plan.append((c, tat + c.interval_ns))
        if worst is not None:
            return Taken(False, worst[1], worst[0])
        if new and len(table) + new > self.max_cells:
            wait = self._make_room(now, new)
            if wait:
                self.refused_full += 1
                return Taken(False, first_new.label, wait, full=True)  # type: ignore[union-attr]
        for c, tat in plan:
            table[c.key] = (tat, c.tolerance_ns)
        return _ADMITTED

    def _make_room(self, now: int, needed: int) -> int:
        """Drop expired, then unlimited cells; return 0 on success or ns until room is expected."""
        if now < self._full_until:
            return self._full_until - now
        table = self.cells
        for k in [k for k, (tat, _) in table.items() if tat <= now]:
            del table[k]
        if len(table) + needed > self.max_cells:
            for k in [k for k, (tat, tol) in table.items() if tat - now <= tol]:
                del table[k]
        if len(table) + needed > self.max_cells:
            self._full_until = min(tat - tol for tat, tol in table.values())
            return max(1, self._full_until - now)
        return 0

    def sweep(self) -> list[str]:
        """Forget expired cells (what a flood put here goes when it is over); returns their keys."""
        now = self.clock_ns()
        expired = [k for k, (tat, _) in self.cells.items() if tat <= now]
        for k in expired:
            del self.cells[k]
        self._full_until = 0
        return expired


@dataclass
class _Failures:
    times: collections.deque[float]
    strikes: int = 0
    banned_until: float = 0.0
    last: float = 0.0
    rule: FailureRule | None = field(default=None, repr=False)


class MemoryStateStore:
    """Everything in this process: the default, and what tests use. Not shared, not persistent.

    Every method runs on one event loop without awaiting, so each is atomic.
    """

    name = "memory"
    shared = False
    replicas = 1

    def __init__(self, settings: MemorySettings | None = None, *, clock_ns: Callable[[], int] = time.monotonic_ns,
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.s = settings or MemorySettings()
        self.clock_ns = clock_ns
        self.monotonic = monotonic
        self.wall = wall
        self._cells = CellTable(self.s.max_cells, clock_ns)
        self._failures: collections.OrderedDict[str, _Failures] = collections.OrderedDict()
        self._policy: dict[tuple[str, str], PolicyRecord] = {}
        self._version = 0
        self._subscribers: dict[str, list[PolicyCallback]] = collections.defaultdict(list)
        self.refused_failures = 0

    @property
    def refused_full(self) -> int:
        return self._cells.refused_full

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # --- GCRA ----------------------------------------------------------------------------
    async def take(self, cells: Sequence[Cell]) -> Taken:
        return self.take_now(cells)

    def take_now(self, cells: Sequence[Cell]) -> Taken:
        return self._cells.take(cells)

    def sweep(self) -> int:
        return len(self._cells.sweep())

    # --- failures ------------------------------------------------------------------------
    async def record_failures(self, items: Sequence[tuple[str, FailureRule]]) -> list[FailureState]:
        return [self._record(k, r) for k, r in items]

    def report_failures(self, items: Sequence[tuple[str, FailureRule]]) -> None:
        for k, r in items:
            self._record(k, r)

    def _record(self, key: str, rule: FailureRule) -> FailureState:
        now = self.monotonic()
        f = self._failures.get(key)
        if f is None:
            if len(self._failures) >= self.s.max_failure_keys and not self._failure_room(now):
                self.refused_failures += 1
                return FailureState(0, 0.0, 0)
            f = self._failures[key] = _Failures(collections.deque(maxlen=rule.ban_after))
        self._failures.move_to_end(key)
        if now < f.banned_until:
            return FailureState(len(f.times), f.banned_until - now, f.strikes)
        if now - f.last > 86_400:
            f.strikes = 0
        f.rule, f.last = rule, now
        if f.times.maxlen != rule.ban_after:
            f.times = collections.deque(f.times, maxlen=rule.ban_after)
        f.times.append(now)
        if len(f.times) >= rule.ban_after and now - f.times[0] <= rule.window_seconds:
            ban = ban_seconds(rule, f.strikes)
            f.banned_until = now + ban
            f.strikes += 1
            f.times.clear()
            # The ban itself, not (now + ban) - now: that float round trip can exceed the ban by an ulp.
            return FailureState(rule.ban_after, ban, f.strikes)
        return FailureState(len(f.times), 0.0, f.strikes)

    def _failure_room(self, now: float) -> bool:
        key, f = next(iter(self._failures.items()))
        keep = f.rule.forget_after_seconds if f.rule else 600.0
        if now >= f.banned_until and now - f.last > max(keep, f.rule.window_seconds if f.rule else 0):
            del self._failures[key]
            return True
        return False

    def ban_remaining(self, key: str) -> float:
        f = self._failures.get(key)
        return max(0.0, f.banned_until - self.monotonic()) if f is not None else 0.0

    # --- policy --------------------------------------------------------------------------
    def subscribe(self, namespace: str, callback: PolicyCallback) -> None:
        self._subscribers[namespace].append(callback)

    async def put_policy(self, namespace: str, key: str, value: Any, actor: str) -> PolicyRecord:
        check_policy_item(namespace, key, value)
        if (namespace, key) not in self._policy and len(self._policy) >= self.s.max_policy_records:
            raise ValueError(f"the store holds {len(self._policy)} policy records, its limit")
        self._version += 1
        rec = PolicyRecord(namespace, key, value, actor, self.wall(), self._version)
        self._policy[(namespace, key)] = rec
        for cb in self._subscribers.get(namespace, ()):
            cb(rec)
        return rec

    async def policy_records(self, namespace: str | None = None) -> list[PolicyRecord]:
        return sorted((r for r in self._policy.values() if r.value is not None
                       and (namespace is None or r.namespace == namespace)), key=lambda r: r.version)

    def status(self) -> StoreStatus:
        return StoreStatus(self.name, True, "in-process; nothing survives a restart",
                           mirror_bans=sum(1 for f in self._failures.values() if f.banned_until > self.monotonic()),
                           policy_records=len(self._policy))

    async def export_state(self) -> dict[str, Any]:
        now = self.monotonic()
        bans = [(k, f.banned_until - now, f.strikes) for k, f in self._failures.items() if f.banned_until > now]
        return export_document(self.name, await self.policy_records(), bans)

    async def import_state(self, policy: Sequence[Mapping[str, Any]], bans: Sequence[Mapping[str, Any]],
                           actor: str) -> int:
        for rec in policy:
            await self.put_policy(rec["namespace"], rec["key"], rec["value"], rec.get("actor") or actor)
        now = self.monotonic()
        for ban in bans:
            f = self._failures.setdefault(ban["key"], _Failures(collections.deque()))
            f.banned_until = max(f.banned_until, now + ban["remaining_seconds"])
            f.strikes, f.last = max(f.strikes, ban.get("strikes", 1)), now
        return len(policy) + len(bans)
