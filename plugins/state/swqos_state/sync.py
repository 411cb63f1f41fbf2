"""What the persistent and shared stores have in common: export documents, the local mirror of
bans, policy subscribers, the background poll, and the fail-closed halt when the store is away.

Request-path lookups (is this key banned? is this trader revoked?) read local state only; this
module keeps it at most one ``sync_interval`` behind the store. When polls keep failing for
``grace_seconds``, ``on_failure = "refuse"`` halts signing through the host-proxy's
ServiceState (health NOT_SERVING, every call UNAVAILABLE) until a poll succeeds again;
``on_failure = "degraded"`` keeps serving from the last known state, logged and counted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from swqos_core.store import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    MAX_POLICY_KEY_CHARS,
    FailureRule,
    FailureState,
    PolicyCallback,
    PolicyRecord,
    StoreStatus,
    StoreUnavailable,
    check_policy_item,
)

log = logging.getLogger("swqos.store")

OnFailure = Literal["refuse", "degraded"]


# --- export documents --------------------------------------------------------------------------

_DOC_KEYS = {"format", "version", "exported_at", "store", "policy", "bans"}
_RECORD_KEYS = {"namespace", "key", "value", "actor", "at", "version"}
_BAN_KEYS = {"key", "remaining_seconds", "strikes"}


def check_export(doc: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate an export document completely before anything is written. Unknown fields, another
    format or a version from the future are refused (ValueError naming the problem)."""
    if not isinstance(doc, dict):
        raise ValueError("an export document is a JSON object")
    unknown = set(doc) - _DOC_KEYS
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} (known: {sorted(_DOC_KEYS)})")
    if doc.get("format") != EXPORT_FORMAT:
        raise ValueError(f"format must be {EXPORT_FORMAT!r}, got {doc.get('format')!r}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    if version > EXPORT_VERSION:
        raise ValueError(f"version {version} is newer than this swqos understands ({EXPORT_VERSION}); upgrade first")
    policy, bans = doc.get("policy", []), doc.get("bans", [])
    if not isinstance(policy, list) or not isinstance(bans, list):
        raise ValueError("'policy' and 'bans' must be lists")
    for i, rec in enumerate(policy):
        if not isinstance(rec, dict) or set(rec) - _RECORD_KEYS or not {"namespace", "key", "value"} <= set(rec):
            raise ValueError(f"policy[{i}]: expected {{namespace, key, value, actor?, at?, version?}} and nothing else")
        if not isinstance(rec["namespace"], str) or not isinstance(rec["key"], str):
            raise ValueError(f"policy[{i}]: namespace and key must be strings")
        check_policy_item(rec["namespace"], rec["key"], rec["value"])
    for i, ban in enumerate(bans):
        if not isinstance(ban, dict) or set(ban) - _BAN_KEYS or not {"key", "remaining_seconds"} <= set(ban):
            raise ValueError(f"bans[{i}]: expected {{key, remaining_seconds, strikes?}} and nothing else")
        rem, strikes = ban["remaining_seconds"], ban.get("strikes", 1)
        if not isinstance(ban["key"], str) or not 0 < len(ban["key"]) <= MAX_POLICY_KEY_CHARS:
            raise ValueError(f"bans[{i}]: key must be a non-empty string")
        if isinstance(rem, bool) or not isinstance(rem, (int, float)) or not 0 <= rem <= 10 * 86_400:
            raise ValueError(f"bans[{i}]: remaining_seconds must be between 0 and 864000")
        if isinstance(strikes, bool) or not isinstance(strikes, int) or not 0 <= strikes <= 64:
            raise ValueError(f"bans[{i}]: strikes must be an integer between 0 and 64")
    return policy, bans





@dataclass
class SyncSettings:
    """The part of a store's settings that governs the mirror and failures (sqlite, redis)."""

    #: Seconds between polls for changes made by other processes (bans, policy records).
    sync_interval: float = 0.25
    #: Seconds the store may be unreachable before signing halts (``on_failure = "refuse"``).
    grace_seconds: float = 2.0
    #: ``refuse``: halt signing (NOT_SERVING, UNAVAILABLE) after the grace; ``degraded``: keep
    #: serving from the last known policy and bans, with per-replica rate limits (logged, counted).
    on_failure: OnFailure = "refuse"
    #: Replicas sharing the store; rate limits divide their quotas by this while it is unreachable.
    replicas: int = 1
    #: Failures queued for the store at most (a flood beyond it is counted, not queued).
    max_pending_failures: int = 10_000
    #: Bans mirrored locally at most.
    max_mirrored_bans: int = 200_000

    def __post_init__(self) -> None:
        if not 0.01 <= self.sync_interval <= 10:
            raise ValueError("sync_interval must be between 0.01 and 10 seconds")
        if not 0 <= self.grace_seconds <= 300:
            raise ValueError("grace_seconds must be between 0 and 300")
        if self.on_failure not in ("refuse", "degraded"):
            raise ValueError("on_failure must be 'refuse' or 'degraded'")
        if not 1 <= self.replicas <= 1000:
            raise ValueError("replicas must be between 1 and 1000")
        if not 1 <= self.max_pending_failures <= 1_000_000:
            raise ValueError("max_pending_failures must be between 1 and 1000000")
        if not 1 <= self.max_mirrored_bans <= 10_000_000:
            raise ValueError("max_mirrored_bans must be between 1 and 10000000")


class StoreSync:
    """Subscribers, the local ban mirror, the background poll and the fail-closed halt.

    A store implementation subclasses it and provides ``_poll()`` (changes since the last call:
    policy records and bans) and ``record_failures``. ``state`` is the host-proxy's ServiceState
    (``halt``/``lift``); None in the CLI.
    """

    name = "store"
    shared = True

    def __init__(self, sync: SyncSettings, *, state: Any = None, logger: logging.Logger | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.sync = sync
        self.replicas = sync.replicas
        self.state = state
        self.log = logger or log
        self.monotonic = monotonic
        self._subscribers: dict[str, list[PolicyCallback]] = collections.defaultdict(list)
        self._applied: dict[tuple[str, str], int] = {}
        self._bans: dict[str, float] = {}  # key -> monotonic end
        self._pending: collections.deque[tuple[str, FailureRule]] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._last_ok = monotonic()
        self._failing_since: float | None = None
        self._halted = False
        self.sync_failures = 0
        self.dropped_failures = 0
        self.dropped_bans = 0
        self.fallbacks = 0
        self.last_error = ""

    # --- subscribers ---------------------------------------------------------------------
    def subscribe(self, namespace: str, callback: PolicyCallback) -> None:
        self._subscribers[namespace].append(callback)

    def _deliver(self, records: Iterable[PolicyRecord]) -> None:
        for rec in records:
            ident = (rec.namespace, rec.key)
            if self._applied.get(ident, -1) >= rec.version:
                continue  # already applied (our own write, seen again by the poll)
            self._applied[ident] = rec.version
            for cb in self._subscribers.get(rec.namespace, ()):
                try:
                    cb(rec)
                except Exception:  # one broken subscriber must not stop the others' updates
                    self.log.exception("applying policy record %s/%s failed", rec.namespace, rec.key)

    # --- bans ---------------------------------------------------------------------------
    def ban_remaining(self, key: str) -> float:
        end = self._bans.get(key)
        if end is None:
            return 0.0
        left = end - self.monotonic()
        if left <= 0:
            del self._bans[key]
            return 0.0
        return left

    def _mirror_ban(self, key: str, remaining: float) -> None:
        if remaining <= 0:
            return
        if key not in self._bans and len(self._bans) >= self.sync.max_mirrored_bans:
            now = self.monotonic()
            for k in [k for k, end in self._bans.items() if end <= now]:
                del self._bans[k]
            if len(self._bans) >= self.sync.max_mirrored_bans:
                self.dropped_bans += 1
                if self.dropped_bans & (self.dropped_bans - 1) == 0:
                    self.log.error("%s: ban mirror full (%d); a ban from the store is not mirrored here (%d so far)",
                                   self.name, len(self._bans), self.dropped_bans)
                return
        self._bans[key] = max(self._bans.get(key, 0.0), self.monotonic() + remaining)

    def report_failures(self, items: Sequence[tuple[str, FailureRule]]) -> None:
        if len(self._pending) + len(items) > self.sync.max_pending_failures:
            self.dropped_failures += len(items)
            if self.dropped_failures & (self.dropped_failures - 1) == 0:
                self.log.error("%s: %d failures waiting for the store; further ones counted here only (%d so far)",
                               self.name, len(self._pending), self.dropped_failures)
            return
        self._pending.extend(items)
        self._wake.set()

    async def _send_failures(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self._stopping:
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), 64))]
                try:
                    states = await self.record_failures(batch)
                except StoreUnavailable as exc:
                    self._pending.extendleft(reversed(batch))  # kept for when the store returns
                    self._failed(exc)
                    await asyncio.sleep(self.sync.sync_interval)
                    continue
                for (key, _), st in zip(batch, states, strict=True):
                    self._mirror_ban(key, st.ban_remaining)

    async def record_failures(self, items: Sequence[tuple[str, FailureRule]]) -> list[FailureState]:
        raise NotImplementedError

    # --- the poll loop and health --------------------------------------------------------
    async def _poll(self) -> tuple[list[PolicyRecord], list[tuple[str, float]]]:
        raise NotImplementedError

    async def poll_once(self) -> None:
        """One sync: apply changes, mirror bans, update health. Raises StoreUnavailable."""
        records, bans = await self._poll()
        for key, remaining in bans:
            self._mirror_ban(key, remaining)
        self._deliver(records)
        self._ok()

    def start_sync(self) -> None:
        self._stopping = False
        self._tasks = [asyncio.create_task(self._poll_forever(), name=f"{self.name}-sync"),
                       asyncio.create_task(self._send_failures(), name=f"{self.name}-failures")]

    async def stop_sync(self) -> None:
        # The flag as well as the cancel: a client library that turns a cancellation inside a
        # command into its own error must not keep the loops alive, and close never waits long.
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            if pending:
                self.log.error("%s: %d background tasks did not stop within 2 s", self.name, len(pending))

    async def _poll_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.sync.sync_interval)
            try:
                await self.poll_once()
            except StoreUnavailable as exc:
                self._failed(exc)
            except Exception as exc:  # a bug in one poll is a failed poll, never a dead loop
                self.log.exception("%s: sync failed", self.name)
                self._failed(StoreUnavailable(f"{type(exc).__name__}: {exc}"))

    def _ok(self) -> None:
        self._last_ok = self.monotonic()
        if self._failing_since is not None:
            self.log.warning("%s: state store reachable again after %.1f s", self.name,
                             self._last_ok - self._failing_since)
            self._failing_since = None
        if self._halted:
            self._halted = False
            if self.state is not None:
                self.state.lift("state_store")

    def _failed(self, exc: Exception) -> None:
        now = self.monotonic()
        self.sync_failures += 1
        self.last_error = str(exc)
        if self._failing_since is None:
            self._failing_since = now
            self.log.error("%s: state store unreachable: %s (%s after %.1f s)", self.name, exc,
                           "signing halts" if self.sync.on_failure == "refuse" else "degraded mode",
                           self.sync.grace_seconds)
        if (self.sync.on_failure == "refuse" and not self._halted
                and now - self._failing_since >= self.sync.grace_seconds):
            self._halted = True
            if self.state is not None:
                self.state.halt("state_store", f"state store {self.name} unreachable: revocations and bans "
                                               "cannot be confirmed")

    def note_fallback(self) -> None:
        """A caller used its per-replica fallback because the store failed (counted, logged)."""
        self.fallbacks += 1
        if self.fallbacks & (self.fallbacks - 1) == 0:
            self.log.error("%s: state store unavailable; rate limits fall back to this replica's own table "
                           "with quotas divided by %d (%d requests so far)", self.name, self.replicas, self.fallbacks)

    @property
    def available(self) -> bool:
        return self._failing_since is None

    def busy_refusals(self) -> int:
        """Rate-limit takes refused at once because the store's request-path bound was reached
        (redis: ``max_in_flight``); 0 for a store without one."""
        return 0

    def status(self) -> StoreStatus:
        detail = "ok" if self.available else f"unreachable: {self.last_error}"
        return StoreStatus(self.name, self.available, detail, degraded=not self.available and
                           self.sync.on_failure == "degraded", fallbacks=self.fallbacks,
                           sync_failures=self.sync_failures, mirror_bans=len(self._bans),
                           policy_records=len(self._applied))


