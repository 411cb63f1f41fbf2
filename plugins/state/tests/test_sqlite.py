"""The sqlite store's file: created 0600 in WAL mode, survives reopening, and a bad file stops
startup naming it, without being touched."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from swqos_core.errors import ConfigError
from swqos_core.store import Cell, FailureRule
from swqos_state.sqlite import APPLICATION_ID

from .helpers import FakeState, sqlite_store

S = 1_000_000_000
RULE = FailureRule(3, 60, 100, 1000, 600)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_new_file_is_private_wal_and_everything_survives_a_reopen(tmp_path):
    store = sqlite_store(tmp_path, path="state/s.sqlite3")
    path = tmp_path / "state" / "s.sqlite3"
    await store.start()
    await store.put_policy("auth_jwt.revoked", "sub:alice", True, "token:ops (t1)")
    for _ in range(3):
        await store.record_failures([("bf:jwt:1", RULE)])
    interval = 3600 * S
    assert (await store.take([Cell("rl:x", interval, 0, "x")])).ok
    await store.close()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    again = sqlite_store(tmp_path, path="state/s.sqlite3")
    seen = []
    again.subscribe("auth_jwt.revoked", seen.append)
    await again.start()
    try:
        assert [(r.key, r.value, r.actor) for r in seen] == [("sub:alice", True, "token:ops (t1)")]
        assert again.ban_remaining("bf:jwt:1") > 98  # the ban outlived the process
        assert not (await again.take([Cell("rl:x", interval, 0, "x")])).ok  # so did the spent cell
    finally:
        await again.close()


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path, content):
    path = tmp_path / "swqos-state.sqlite3"
    path.write_bytes(content)
    before = digest(path)
    with pytest.raises(ConfigError) as ei:
        sqlite_store(tmp_path, path=str(path))
    assert str(path) in str(ei.value) and "refusing to start" in str(ei.value)
    assert digest(path) == before


def test_a_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
        db.execute("INSERT INTO users VALUES ('x')")
    before = digest(path)
    with pytest.raises(ConfigError) as ei:
        sqlite_store(tmp_path, path=str(path))
    assert str(path) in str(ei.value) and "another application" in str(ei.value)
    assert digest(path) == before


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = sqlite_store(tmp_path, path=str(path))
    store.open()
    store.close_now()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError) as ei:
        sqlite_store(tmp_path, path=str(path))
    assert "newer swqos" in str(ei.value) and str(path) in str(ei.value)


def test_a_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = sqlite_store(tmp_path, path=str(path))
    store.open()
    store.close_now()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = DELETE")  # fold the WAL in so the bytes below are the data
        db.executemany("INSERT INTO cells VALUES (?, 1, 0)", [(f"k{i}" * 20,) for i in range(2000)])
    assert sqlite3.connect(path).execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    raw = bytearray(path.read_bytes())
    for off in range(4096 * 2, len(raw), 4096):  # scribble over every page but the header page
        raw[off + 100:off + 400] = b"\xa5" * 300
    path.write_bytes(bytes(raw))
    before = digest(path)
    with pytest.raises(ConfigError) as ei:
        sqlite_store(tmp_path, path=str(path))
    assert str(path) in str(ei.value)
    assert digest(path) == before


async def test_two_processes_sharing_the_file_see_each_others_bans_and_policy(tmp_path):
    a, b = sqlite_store(tmp_path, processes=2), sqlite_store(tmp_path, processes=2)
    await a.start()
    await b.start()
    seen = []
    b.subscribe("auth_jwt.revoked", seen.append)
    try:
        for _ in range(3):
            await a.record_failures([("bf:jwt:7", RULE)])
        await a.put_policy("auth_jwt.revoked", "sub:eve", True, "cli")
        await b.poll_once()
        assert b.ban_remaining("bf:jwt:7") > 98
        assert [r.key for r in seen] == ["sub:eve"]
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("processes", [1, 2])  # cells in memory, and in the file
async def test_table_full_of_limited_cells_refuses_new_keys(tmp_path, processes):
    store = sqlite_store(tmp_path, max_cells=16, processes=processes)
    await store.start()
    try:
        hour = 3600 * S
        for i in range(16):
            assert (await store.take([Cell(f"rl:hs:{i}", hour, 0, "address_handshakes")])).ok
        full = await store.take([Cell("rl:hs:new", hour, 0, "address_handshakes")])
        assert not full.ok and full.full and full.label == "address_handshakes"
        assert store.refused_full == 1
        # the limited ones were not forgotten
        assert not (await store.take([Cell("rl:hs:0", hour, 0, "address_handshakes")])).ok
    finally:
        await store.close()


def test_building_creates_nothing(tmp_path):
    sqlite_store(tmp_path, path="state/s.sqlite3")  # what `swqos config check` does
    assert not (tmp_path / "state").exists()


def test_settings_are_checked(tmp_path):
    from swqos_core import schema
    from swqos_state.sqlite import SqliteSettings

    problems: list[str] = []
    schema.build(SqliteSettings, {"max_cells": 1, "on_failure": "ignore", "grace_seconds": -1}, where="s",
                 base_dir=tmp_path, problems=problems)
    assert problems


async def test_unwritable_store_is_unavailable_not_a_crash(tmp_path):
    store = sqlite_store(tmp_path, state=FakeState())
    await store.start()
    store.close_now()
    from swqos_core.store import StoreUnavailable

    with pytest.raises(StoreUnavailable):
        await store.take([Cell("rl:x", S, 0, "x")])
    with pytest.raises(StoreUnavailable):
        await store.record_failures([("bf:x", RULE)])
    await store.close()


async def test_one_process_keeps_cells_in_memory_and_writes_them_behind(tmp_path):
    store = sqlite_store(tmp_path, cells_flush_interval=10.0)
    path = tmp_path / "state" / "swqos-state.sqlite3"
    await store.start()
    try:
        assert store.cells_in_memory
        hour = 3600 * S
        assert (await store.take([Cell("rl:mem", hour, 0, "x")])).ok
        assert not (await store.take([Cell("rl:mem", hour, 0, "x")])).ok  # decided in memory
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM cells").fetchone()[0] == 0  # not written yet
        assert store.flush_cells() == 1
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT key FROM cells").fetchall() == [("rl:mem",)]
        assert (await store.take([Cell("rl:other", hour, 0, "x")])).ok
    finally:
        await store.close()  # writes what is left
    with sqlite3.connect(path) as db:
        assert {k for (k,) in db.execute("SELECT key FROM cells")} == {"rl:mem", "rl:other"}
    again = sqlite_store(tmp_path)
    await again.start()
    try:
        assert not (await again.take([Cell("rl:other", 3600 * S, 0, "x")])).ok  # loaded back at start
    finally:
        await again.close()


async def test_a_second_proxy_on_a_one_process_file_is_refused_and_a_shared_file_decides_in_the_file(tmp_path):
    first = sqlite_store(tmp_path)
    await first.start()
    try:
        with pytest.raises(ConfigError) as ei:
            await sqlite_store(tmp_path).start()
        assert "in use by another host-proxy" in str(ei.value) and "processes = N" in str(ei.value)
        with pytest.raises(ConfigError):
            await sqlite_store(tmp_path, processes=2).start()  # nor may it join as a shared one
    finally:
        await first.close()
    a, b = sqlite_store(tmp_path, processes=2), sqlite_store(tmp_path, processes=2)
    await a.start()
    await b.start()
    try:
        assert not a.cells_in_memory and not b.cells_in_memory
        cell = [Cell("rl:shared", 3600 * S, 3600 * S, "x")]  # a burst of 2
        got = [(await store.take(cell)).ok for store in (a, b, a, b)]
        assert got == [True, True, False, False]  # one quota for both processes
    finally:
        await a.close()
        await b.close()


async def test_workers_share_the_file_without_a_setting(tmp_path):
    import dataclasses

    from swqos_state import sqlite

    from .helpers import ctx, settings

    base = tmp_path
    c = dataclasses.replace(ctx(base), workers=2)  # what [proxy] workers = 2 hands every worker
    a = sqlite.build(settings(sqlite.SqliteSettings, {}, base), c)
    b = sqlite.build(settings(sqlite.SqliteSettings, {}, base), c)
    await a.start()
    await b.start()
    try:
        assert not a.cells_in_memory
        assert (await a.take([Cell("rl:w", 3600 * S, 0, "x")])).ok
        assert not (await b.take([Cell("rl:w", 3600 * S, 0, "x")])).ok
    finally:
        await a.close()
        await b.close()
