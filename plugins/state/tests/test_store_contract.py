"""The same contract for every store: memory (kernel), sqlite (a file), redis (a real server)."""

from __future__ import annotations

import asyncio

import pytest

from swqos_core.store import Cell, FailureRule, MemoryStateStore, StateStore

from .helpers import redis_store_for, sqlite_store

S = 1_000_000_000
RULE = FailureRule(ban_after=5, window_seconds=60, ban_seconds=100, ban_max_seconds=1000, forget_after_seconds=600)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryStateStore()
    elif request.param == "sqlite":
        s = sqlite_store(tmp_path)
    else:
        s = redis_store_for(request.getfixturevalue("redis_server"), tmp_path)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def slow(label: str, key: str, burst: int = 1) -> Cell:
    """One per hour, ``burst`` back to back: nothing refills during a test."""
    interval = 3600 * S
    return Cell(key, interval, interval * (burst - 1), label)


async def test_is_a_state_store(store):
    assert isinstance(store, StateStore)


async def test_take_admits_exactly_the_burst(store):
    got = [(await store.take([slow("hs", "t:burst", burst=3)])).ok for _ in range(5)]
    assert got == [True, True, True, False, False]
    refused = await store.take([slow("hs", "t:burst", burst=3)])
    assert refused.label == "hs" and 3599 * S < refused.wait_ns <= 3600 * S


async def test_take_is_all_or_nothing(store):
    assert (await store.take([slow("a", "t:a")])).ok  # a is now spent
    r = await store.take([slow("b", "t:b"), slow("a", "t:a")])
    assert not r.ok and r.label == "a"
    # b was not consumed by the refused request: it still admits once
    assert (await store.take([slow("b", "t:b")])).ok
    assert not (await store.take([slow("b", "t:b")])).ok


async def test_concurrent_takes_never_exceed_the_burst(store):
    results = await asyncio.gather(*(store.take([slow("c", "t:conc", burst=7)]) for _ in range(40)))
    assert sum(r.ok for r in results) == 7


async def test_failures_ban_at_the_threshold_and_double(store):
    states = [(await store.record_failures([("bf:k", RULE)]))[0] for _ in range(5)]
    assert [s.ban_remaining > 0 for s in states] == [False] * 4 + [True]
    assert 99 <= states[-1].ban_remaining <= 100 and states[-1].strikes == 1
    # while banned, further failures change nothing
    again = (await store.record_failures([("bf:k", RULE)]))[0]
    assert 98 <= again.ban_remaining <= 100


async def test_several_keys_in_one_call(store):
    rule48 = FailureRule(2, 60, 50, 1000, 600)
    first = await store.record_failures([("bf:64", RULE), ("bf:48", rule48)])
    second = await store.record_failures([("bf:64", RULE), ("bf:48", rule48)])
    assert [s.ban_remaining > 0 for s in first] == [False, False]
    assert [s.ban_remaining > 0 for s in second] == [False, True]


async def test_policy_records_are_delivered_and_listed(store):
    seen = []
    store.subscribe("test.revoked", seen.append)
    rec = await store.put_policy("test.revoked", "sub:alice", {"revoked": True}, "token:ops (t1)")
    assert rec.actor == "token:ops (t1)" and rec.version >= 1 and rec.at > 1_700_000_000
    assert [r.key for r in seen] == ["sub:alice"]
    await store.put_policy("test.revoked", "sub:bob", {"revoked": True}, "cli")
    cleared = await store.put_policy("test.revoked", "sub:alice", None, "cli")
    assert cleared.version > rec.version and seen[-1].value is None
    assert [r.key for r in await store.policy_records("test.revoked")] == ["sub:bob"]


async def test_bad_policy_items_are_refused(store):
    for ns, key, value in (("bad ns", "k", 1), ("ns", "", 1), ("ns", "a\nb", 1), ("ns", "k", {"x": float("nan")}),
                           ("ns", "k", "x" * 200_000)):
        with pytest.raises(ValueError):
            await store.put_policy(ns, key, value, "cli")
    assert await store.policy_records() == []


async def test_export_and_import_round_trip(store, tmp_path):
    await store.put_policy("test.q", "alice", {"rate": 5}, "token:ops")
    for _ in range(5):
        await store.record_failures([("bf:x", RULE)])
    doc = await store.export_state()
    assert doc["format"] == "swqos-state" and doc["version"] == 1
    assert [(r["namespace"], r["key"], r["value"], r["actor"]) for r in doc["policy"]] == [
        ("test.q", "alice", {"rate": 5}, "token:ops")]
    assert [b["key"] for b in doc["bans"]] == ["bf:x"] and 99 <= doc["bans"][0]["remaining_seconds"] <= 100
    target = sqlite_store(tmp_path / "other")
    await target.start()
    try:
        from swqos_state.sync import check_export

        policy, bans = check_export(doc)
        assert await target.import_state(policy, bans, "cli") == 2
        assert target.ban_remaining("bf:x") > 98
        assert [(r.key, r.actor) for r in await target.policy_records()] == [("alice", "token:ops")]
    finally:
        await target.close()
