"""The ``sqlite`` store: one file in a state directory, for a host-proxy on one host (the default
persistent store).

The file is a SQLite database in WAL mode (readers never block the writer, a crash leaves the
last committed transaction). GCRA cells and failure counters are written with
``synchronous = NORMAL`` (a committed transaction survives the process being killed; a power cut
may lose the last few milliseconds of rate-limit state, which only makes a quota a little more
generous once); policy records (admin changes) go through a second connection with
``synchronous = FULL``, so an acknowledged revocation survives a power cut too.

Times are wall-clock (``time.time_ns``), because the state outlives the process and a monotonic
clock restarts at boot. A wall clock stepped backwards makes limits stricter for the size of the
step, stepped forwards makes them fresh: NTP slews, so neither is more than milliseconds.

The file is checked before anything is written: a file that is not SQLite, a SQLite file of
another application (``PRAGMA application_id``), one written by a newer swqos (``user_version``)
or one that fails ``PRAGMA quick_check`` stops startup with a message naming the file. It is
never reset or recreated silently. Several processes on one host may share the file: each polls
for the others' bans and policy changes every ``sync_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swqos_core.errors import ConfigError
from swqos_core.store import (
    Cell,
    CellTable,
    FailureRule,
    FailureState,
    PolicyRecord,
    StoreUnavailable,
    Taken,
    ban_seconds,
    check_policy_item,
    export_document,
)
from swqos_state.sync import StoreSync, SyncSettings

#: "SWQS": marks the file as ours (``PRAGMA application_id``).
APPLICATION_ID = 0x53575153
SCHEMA_VERSION = 1
STRIKE_MEMORY_SECONDS = 86_400.0

_SCHEMA = """
CREATE TABLE cells (key TEXT PRIMARY KEY, tat INTEGER NOT NULL, tol INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX cells_tat ON cells (tat);
CREATE TABLE failures (key TEXT PRIMARY KEY, times TEXT NOT NULL, strikes INTEGER NOT NULL,
                       banned_until REAL NOT NULL, last REAL NOT NULL, keep REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX failures_last ON failures (last);
CREATE TABLE bans (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, until REAL NOT NULL);
CREATE TABLE policy (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT, actor TEXT NOT NULL,
                     at REAL NOT NULL, version INTEGER NOT NULL UNIQUE, PRIMARY KEY (namespace, key)) WITHOUT ROWID;
"""
_TABLES = {"cells", "failures", "bans", "policy"}
_UPSERT_CELL = ("INSERT INTO cells (key, tat, tol) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, tol = excluded.tol")


@dataclass
class SqliteSettings(SyncSettings):
    """``[layers.store.sqlite]``"""

    #: The state file (relative paths are against the config file's directory). Its directory is
    #: created 0700 when missing; the file is created 0600.
    path: Path = Path("state/swqos-state.sqlite3")
    #: GCRA cells kept at most; limited ones are never evicted (a new key is refused instead).
    max_cells: int = 1_000_000
    #: Keys with failures kept at most (same rule).
    max_failure_keys: int = 200_000
    #: Policy records (admin changes, tombstones included) kept at most.
    max_policy_records: int = 100_000
    #: How long a writer waits for another process's transaction before the call fails (ms).
    busy_timeout_ms: int = 100
    #: Seconds between sweeps that delete expired cells, failures and ended bans.
    sweep_interval: float = 10.0
    #: Host-proxies using this file (``[proxy] workers`` counts by itself: set this only when
    #: separate proxies on one host share the file). One process: it holds the file's lock and
    #: decides rate-limit cells in memory, writing them to the file every ``cells_flush_interval``
    #: (a kill -9 forgets at most that much of the limits' consumption; admin changes, failures
    #: and bans are written at once, as always). Several: every take is a transaction in the file,
    #: atomic across them, at about 100 µs more per signature. A second process on a one-process
    #: file is refused at start.
    processes: int = 1
    #: Seconds between writes of the rate-limit cells to the file (``processes = 1``).
    cells_flush_interval: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_cells", "max_failure_keys", "max_policy_records"):
            if not 16 <= getattr(self, name) <= 100_000_000:
                raise ValueError(f"{name} must be between 16 and 100000000")
        if not 1 <= self.busy_timeout_ms <= 10_000:
            raise ValueError("busy_timeout_ms must be between 1 and 10000")
        if not 0.1 <= self.sweep_interval <= 3600:
            raise ValueError("sweep_interval must be between 0.1 and 3600 seconds")
        if not 1 <= self.processes <= 1024:
            raise ValueError("processes must be between 1 and 1024")
        if not 0.01 <= self.cells_flush_interval <= 10:
            raise ValueError("cells_flush_interval must be between 0.01 and 10 seconds")


class SqliteStateStore(StoreSync):
    """A :class:`~swqos_core.store.StateStore` in one SQLite file."""

    name = "sqlite"
    shared = True  # several processes on one host may share the file

    def __init__(self, settings: SqliteSettings, path: Path, *, state: Any = None,
                 logger: logging.Logger | None = None, serving: bool = True, workers: int = 1) -> None:
        super().__init__(settings, state=state, logger=logger or logging.getLogger("swqos.store.sqlite"))
        self.s = settings
        self.path = path
        #: A host-proxy (not the CLI) that is the file's only process: cells live in ``_table``.
        self.cells_in_memory = serving and settings.processes == 1 and workers == 1
        self._serving = serving
        self._table = CellTable(settings.max_cells, time.time_ns)  # wall clock: the file outlives us
        self._dirty: set[str] = set()
        self._lock_fd: int | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._db: sqlite3.Connection | None = None
        self._policy_db: sqlite3.Connection | None = None
        self._cells = 0
        self._failure_keys = 0
        self._policy_rows = 0
        self._ban_seq = 0
        self._version = 0
        self._full_until = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._refused_full_in_file = 0
        self.refused_failures = 0

    @property
    def refused_full(self) -> int:
        """New keys refused because the cells were all limited (in memory or in the file)."""
        return self._refused_full_in_file + self._table.refused_full

    # --- opening and checking the file ----------------------------------------------------
    def open(self) -> None:
        """Open (creating when absent) and check the file; ConfigError names it on any problem."""
        path = self.path
        fresh = not path.exists() or path.stat().st_size == 0
        if fresh:
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            except OSError as exc:
                raise ConfigError(f"[layers.store.sqlite] cannot create the state file {path}: {exc}") from None
        try:
            self._db = self._connect("NORMAL")
            if fresh:
                self._create()
            else:
                self._check()
            self._policy_db = self._connect("FULL")
        except sqlite3.DatabaseError as exc:
            self.close_now()
            raise ConfigError(f"[layers.store.sqlite] {path} is not a usable swqos state file ({exc}); "
                              "refusing to start. Move it aside (or restore it from `swqos state export`) "
                              "rather than let swqos reset it") from None
        db = self._db
        self._cells = db.execute("SELECT count(*) FROM cells").fetchone()[0]
        self._failure_keys = db.execute("SELECT count(*) FROM failures").fetchone()[0]
        self._policy_rows = db.execute("SELECT count(*) FROM policy").fetchone()[0]
        self._version = db.execute("SELECT coalesce(max(version), 0) FROM policy").fetchone()[0]

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=self.s.busy_timeout_ms / 1000)
        db.execute(f"PRAGMA busy_timeout = {int(self.s.busy_timeout_ms)}")
        self._set_synchronous(db, synchronous)
        return db

    def _create(self) -> None:
        db = self._db
        assert db is not None
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.DatabaseError(f"cannot switch to WAL (journal_mode is {mode})")
        db.execute("BEGIN IMMEDIATE")
        # executescript would commit on its own: the DDL runs statement by statement in this transaction
        for stmt in filter(str.strip, _SCHEMA.split(";")):
            db.execute(stmt)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
        self._set_synchronous(db, "NORMAL")

    def check_existing(self) -> None:
        """Check an existing file read-only (``swqos config check``, the factory): nothing is created
        or written; ConfigError names the file. A missing file is fine (``start`` creates it)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"[layers.store.sqlite] cannot open {self.path}: {exc}") from None
        try:
            self._check(db, write=False)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"[layers.store.sqlite] {self.path} is not a usable swqos state file ({exc}); "
                              "refusing to start. Move it aside (or restore it from `swqos state export`) "
                              "rather than let swqos reset it") from None
        finally:
            db.close()

    def _check(self, db: sqlite3.Connection | None = None, *, write: bool = True) -> None:
        db = db or self._db
        assert db is not None
        app = db.execute("PRAGMA application_id").fetchone()[0]
        if app != APPLICATION_ID:
            raise ConfigError(f"[layers.store.sqlite] {self.path} is a SQLite file of another application "
                              f"(application_id {app:#x}, swqos uses {APPLICATION_ID:#x}); refusing to start "
                              "rather than write into it")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(f"[layers.store.sqlite] {self.path} was written by a newer swqos (schema {version}, "
                              f"this one knows {SCHEMA_VERSION}); upgrade swqos or restore a backup")
        if version != SCHEMA_VERSION:
            raise ConfigError(f"[layers.store.sqlite] {self.path}: unknown schema version {version}")
        check = db.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            first = "; ".join(str(r[0]) for r in check[:3])
            raise ConfigError(f"[layers.store.sqlite] {self.path} is corrupt (quick_check: {first}); refusing to "
                              "start. Restore it from a backup (`swqos state import`) or move it aside")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not _TABLES <= tables:
            raise ConfigError(f"[layers.store.sqlite] {self.path} lacks the tables {sorted(_TABLES - tables)}; "
                              "refusing to start")
        if write:
            db.execute("PRAGMA journal_mode = WAL")
            self._set_synchronous(db, "NORMAL")

    @staticmethod
    def _set_synchronous(db: sqlite3.Connection, level: str) -> None:
        db.execute(f"PRAGMA synchronous = {level}")

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._serving:
            self._lock()
        if self._db is None:
            try:
                self.open()
            except BaseException:
                self._unlock()
                raise
        assert self._policy_db is not None
        self._set_synchronous(self._policy_db, "FULL")
        self._ban_seq = self._db.execute("SELECT coalesce(max(seq), 0) FROM bans").fetchone()[0]
        now = time.time()
        for key, until in self._db.execute("SELECT key, max(until) FROM bans WHERE until > ? GROUP BY key", (now,)):
            self._mirror_ban(key, until - now)
        self._deliver(self._records("SELECT namespace, key, value, actor, at, version FROM policy ORDER BY version"))
        if self.cells_in_memory:
            now = time.time_ns()
            self._table.cells = {k: (tat, tol) for k, tat, tol in self._db.execute(
                "SELECT key, tat, tol FROM cells WHERE tat > ? LIMIT ?", (now, self.s.max_cells))}
            self._flusher = asyncio.create_task(self._flush_forever(), name="sqlite-cells")
        self._ok()
        self.start_sync()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="sqlite-sweep")

    def _lock(self) -> None:
        """Exclusive while this process keeps the cells in memory, shared otherwise: a second proxy
        on a file whose limits live in another's memory would grant its own quotas."""
        if self._lock_fd is not None:
            return
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"[layers.store.sqlite] cannot create the lock file {lock}: {exc}") from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if self.cells_in_memory else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"[layers.store.sqlite] {self.path} is in use by another host-proxy, and one of "
                              "you keeps its limits in memory (processes = 1, no workers). Separate proxies "
                              "sharing one file need processes = N in every one of them") from None
        self._lock_fd = fd

    async def close(self) -> None:
        await self.stop_sync()
        for task in (self._sweeper, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sweeper = self._flusher = None
        if self.cells_in_memory and self._db is not None:
            try:
                self.flush_cells()
            except sqlite3.Error as exc:
                self.log.error("sqlite: the last rate-limit cells were not written at close: %s", exc)
        self.close_now()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def close_now(self) -> None:
        for db in (self._db, self._policy_db):
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
        self._db = self._policy_db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable(f"sqlite state file {self.path} is not open")
        return self._db

    # --- GCRA ----------------------------------------------------------------------------
    async def take(self, cells: Sequence[Cell]) -> Taken:
        if self.cells_in_memory:
            return self._take_memory(cells)
        try:
            return self._take(cells)
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None

    def _take(self, cells: Sequence[Cell]) -> Taken:
        db = self._conn()
        now = time.time_ns()
        keys = [c.key for c in cells]
        db.execute("BEGIN IMMEDIATE")
        try:
            # Only placeholders are formatted in; the keys themselves are bound parameters.
            marks = ",".join("?" * len(keys))
            held = dict(db.execute(f"SELECT key, tat FROM cells WHERE key IN ({marks})", keys))  # noqa: S608
            worst: tuple[int, str] | None = None
            rows = []
            for c in cells:
                tat = held.get(c.key)
                tat = now if tat is None or tat < now else tat
                allow_at = tat - c.tolerance_ns
                if now < allow_at:
                    if worst is None or allow_at - now > worst[0]:
                        worst = (allow_at - now, c.label)
                else:
                    rows.append((c.key, tat + c.interval_ns, c.tolerance_ns))
            if worst is not None:
                db.execute("ROLLBACK")
                return Taken(False, worst[1], worst[0])
            new = [c for c in cells if c.key not in held]
            if new and self._cells + len(new) > self.s.max_cells:
                wait = self._make_room(db, now, len(new))
                if wait:
                    db.execute("ROLLBACK")
                    self._refused_full_in_file += 1
                    return Taken(False, new[0].label, wait, full=True)
            db.executemany(_UPSERT_CELL, rows)
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._cells += len(new)
        return Taken(True)

    def _take_memory(self, cells: Sequence[Cell]) -> Taken:
        """The file's only process decides in memory (:class:`~swqos_core.store.CellTable`); the
        cells it wrote go to the file with the next flush."""
        if self._db is None:
            raise StoreUnavailable(f"sqlite state file {self.path} is not open")
        taken = self._table.take(cells)
        if taken.ok:
            dirty = self._dirty
            for c in cells:
                dirty.add(c.key)
        return taken

    def flush_cells(self) -> int:
        """Write the cells changed since the last flush in one transaction; returns how many."""
        if not self._dirty:
            return 0
        mem, dirty = self._table.cells, self._dirty
        rows = [(k, *mem[k]) for k in dirty if k in mem]
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_UPSERT_CELL, rows)
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._dirty = set()
        return len(rows)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.s.cells_flush_interval)
            try:
                self.flush_cells()
            except sqlite3.Error as exc:  # kept dirty: the next flush writes them
                self.sync_failures += 1  # swqos_state_store_sync_failures_total
                if self.sync_failures & (self.sync_failures - 1) == 0:  # a line per outage, not per flush
                    self.log.error("sqlite: writing the rate-limit cells to %s failed (%d failures so far; "
                                   "limits keep working in memory): %s", self.path, self.sync_failures, exc)

    def _make_room(self, db: sqlite3.Connection, now: int, needed: int) -> int:
        """Inside the caller's transaction: drop expired, then unlimited cells; 0 or ns to wait."""
        if now < self._full_until:
            return self._full_until - now
        db.execute("DELETE FROM cells WHERE tat <= ?", (now,))
        self._cells = db.execute("SELECT count(*) FROM cells").fetchone()[0]
        if self._cells + needed > self.s.max_cells:
            db.execute("DELETE FROM cells WHERE tat - tol <= ?", (now,))
            self._cells = db.execute("SELECT count(*) FROM cells").fetchone()[0]
        if self._cells + needed > self.s.max_cells:
            first = db.execute("SELECT min(tat - tol) FROM cells").fetchone()[0]
            self._full_until = first
            return max(1, first - now)
        return 0

    def _rollback(self) -> None:
        if self._db is not None and self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    # --- failures ------------------------------------------------------------------------
    async def record_failures(self, items: Sequence[tuple[str, FailureRule]]) -> list[FailureState]:
        try:
            return self._record_failures(items)
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None

    def _record_failures(self, items: Sequence[tuple[str, FailureRule]]) -> list[FailureState]:
        db = self._conn()
        now = time.time()
        out: list[FailureState] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for key, rule in items:
                out.append(self._record_one(db, key, rule, now))
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return out

    def _record_one(self, db: sqlite3.Connection, key: str, rule: FailureRule, now: float) -> FailureState:
        row = db.execute("SELECT times, strikes, banned_until, last FROM failures WHERE key = ?", (key,)).fetchone()
        if row is None:
            if self._failure_keys >= self.s.max_failure_keys:
                db.execute("DELETE FROM failures WHERE banned_until <= ? AND last < ? - keep", (now, now))
                self._failure_keys = db.execute("SELECT count(*) FROM failures").fetchone()[0]
                if self._failure_keys >= self.s.max_failure_keys:
                    self.refused_failures += 1
                    return FailureState(0, 0.0, 0)
            times, strikes, banned_until, last = [], 0, 0.0, 0.0
            self._failure_keys += 1
        else:
            times, strikes, banned_until, last = json.loads(row[0]), row[1], row[2], row[3]
        if now < banned_until:
            return FailureState(len(times), banned_until - now, strikes)
        if now - last > STRIKE_MEMORY_SECONDS:
            strikes = 0
        recent = [t for t in times if now - t <= rule.window_seconds]
        times = (recent[-(rule.ban_after - 1):] if rule.ban_after > 1 else []) + [now]
        state = FailureState(len(times), 0.0, strikes)
        if len(times) >= rule.ban_after:
            ban = ban_seconds(rule, strikes)
            banned_until = now + ban
            strikes += 1
            times = []
            cur = db.execute("INSERT INTO bans (key, until) VALUES (?, ?)", (key, banned_until))
            self._ban_seq = max(self._ban_seq, cur.lastrowid or 0)
            state = FailureState(rule.ban_after, ban, strikes)  # not (now + ban) - now: an ulp over
        db.execute("INSERT INTO failures (key, times, strikes, banned_until, last, keep) VALUES (?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (key) DO UPDATE SET times = excluded.times, strikes = excluded.strikes, "
                   "banned_until = excluded.banned_until, last = excluded.last, keep = excluded.keep",
                   (key, json.dumps(times), strikes, banned_until, now, rule.forget_after_seconds))
        return state

    # --- policy --------------------------------------------------------------------------
    async def put_policy(self, namespace: str, key: str, value: Any, actor: str) -> PolicyRecord:
        check_policy_item(namespace, key, value)
        db = self._policy_db
        if db is None:
            raise StoreUnavailable(f"sqlite state file {self.path} is not open")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                exists = db.execute("SELECT 1 FROM policy WHERE namespace = ? AND key = ?", (namespace, key)).fetchone()
                count = db.execute("SELECT count(*) FROM policy").fetchone()[0]
                if not exists and count >= self.s.max_policy_records:
                    raise ValueError(f"the state store holds {count} policy records, its limit (max_policy_records)")
                version = db.execute("SELECT coalesce(max(version), 0) + 1 FROM policy").fetchone()[0]
                at = time.time()
                db.execute("INSERT INTO policy (namespace, key, value, actor, at, version) VALUES (?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, actor = excluded.actor, "
                           "at = excluded.at, version = excluded.version",
                           (namespace, key, None if value is None else json.dumps(value), actor, at, version))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None
        rec = PolicyRecord(namespace, key, value, actor, at, version)
        self._deliver([rec])
        return rec

    def _records(self, sql: str, args: Sequence[Any] = ()) -> list[PolicyRecord]:
        return [PolicyRecord(ns, key, None if value is None else json.loads(value), actor, at, version)
                for ns, key, value, actor, at, version in self._conn().execute(sql, args)]

    async def policy_records(self, namespace: str | None = None) -> list[PolicyRecord]:
        sql = "SELECT namespace, key, value, actor, at, version FROM policy WHERE value IS NOT NULL"
        if namespace is None:
            return self._records(sql + " ORDER BY version")
        return self._records(sql + " AND namespace = ? ORDER BY version", (namespace,))

    # --- the poll ------------------------------------------------------------------------
    async def _poll(self) -> tuple[list[PolicyRecord], list[tuple[str, float]]]:
        try:
            db = self._conn()
            now = time.time()
            bans = db.execute("SELECT seq, key, until FROM bans WHERE seq > ? ORDER BY seq", (self._ban_seq,)).fetchall()
            if bans:
                self._ban_seq = bans[-1][0]
            records = self._records("SELECT namespace, key, value, actor, at, version FROM policy "
                                    "WHERE version > ? ORDER BY version", (self._version,))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None
        if records:
            self._version = records[-1].version
        return records, [(key, until - now) for _, key, until in bans]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.s.sweep_interval)
            try:
                self.sweep()
            except sqlite3.Error as exc:  # the next sweep tries again; the caps still hold
                self.log.error("sqlite sweep failed: %s", exc)

    def sweep(self) -> int:
        """Delete cells equivalent to absent, failures past their memory and ended bans."""
        db = self._conn()
        now_ns, now = time.time_ns(), time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            n = db.execute("DELETE FROM cells WHERE tat <= ?", (now_ns,)).rowcount
            n += db.execute("DELETE FROM failures WHERE banned_until <= ? AND last < ? - max(keep, ?)",
                            (now, now, STRIKE_MEMORY_SECONDS)).rowcount
            db.execute("DELETE FROM bans WHERE until <= ?", (now,))
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._cells = db.execute("SELECT count(*) FROM cells").fetchone()[0]
        self._failure_keys = db.execute("SELECT count(*) FROM failures").fetchone()[0]
        self._full_until = 0
        if self.cells_in_memory:  # what a flood put in memory goes when its cells expire
            self._dirty.difference_update(self._table.sweep())
        return n

    # --- export / import -----------------------------------------------------------------
    async def export_state(self) -> dict[str, Any]:
        now = time.time()
        bans = [(k, until - now, strikes) for k, until, strikes in
                self._conn().execute("SELECT key, banned_until, strikes FROM failures WHERE banned_until > ?", (now,))]
        return export_document(self.name, await self.policy_records(), bans)

    async def import_state(self, policy: Sequence[Mapping[str, Any]], bans: Sequence[Mapping[str, Any]],
                           actor: str) -> int:
        for rec in policy:
            await self.put_policy(rec["namespace"], rec["key"], rec["value"], rec.get("actor") or actor)
        db = self._conn()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            for ban in bans:
                until = now + float(ban["remaining_seconds"])
                db.execute("INSERT INTO failures (key, times, strikes, banned_until, last, keep) VALUES (?, '[]', ?, ?, ?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET banned_until = max(banned_until, excluded.banned_until), "
                           "strikes = max(strikes, excluded.strikes)",
                           (ban["key"], int(ban.get("strikes", 1)), until, now, 600.0))
                db.execute("INSERT INTO bans (key, until) VALUES (?, ?)", (ban["key"], until))
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        for ban in bans:
            self._mirror_ban(ban["key"], float(ban["remaining_seconds"]))
        return len(policy) + len(bans)


def build(settings: SqliteSettings, ctx: Any) -> SqliteStateStore:
    """The registered factory: an existing file is checked now (read-only), so a bad file stops
    startup and ``config check``; ``start`` (first of every layer) opens or creates it."""
    store = SqliteStateStore(settings, ctx.path(settings.path), state=ctx.state, logger=ctx.logger,
                             serving=ctx.process == "proxy", workers=ctx.workers)
    store.check_existing()
    return store
