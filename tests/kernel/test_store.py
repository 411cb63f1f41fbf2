"""The kernel's in-process state store: bounded tables that never forget a limited key or a ban."""

from __future__ import annotations

import pytest

from swqos_core.store import Cell, FailureRule, MemorySettings, MemoryStateStore, StateStore

S = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ns = 10**15

    def __call__(self) -> int:
        return self.ns


def test_is_a_state_store_and_the_default():
    from swqos_core.config import ProxyPipeline

    assert isinstance(MemoryStateStore(), StateStore)
    assert ProxyPipeline(auth=["jwt"]).store == "memory"


def test_full_table_evicts_unlimited_cells_and_refuses_new_keys_when_all_are_limited():
    clock = Clock()
    store = MemoryStateStore(MemorySettings(max_cells=16), clock_ns=clock)
    hour = 3600 * S
    for i in range(16):
        assert store.take_now([Cell(f"hs:{i}", hour, 0, "hs")]).ok  # each now limited for an hour
    refused = store.take_now([Cell("hs:new", hour, 0, "hs")])
    assert not refused.ok and refused.full and store.refused_full == 1
    assert 0 < refused.wait_ns <= hour
    assert not store.take_now([Cell("hs:0", hour, 0, "hs")]).ok  # still limited, not forgotten
    clock.ns += hour + 1  # every key is fresh again: room
    assert store.take_now([Cell("hs:new", hour, 0, "hs")]).ok


def test_unlimited_cells_make_room():
    clock = Clock()
    store = MemoryStateStore(MemorySettings(max_cells=16), clock_ns=clock)
    for i in range(16):
        assert store.take_now([Cell(f"a:{i}", S, 10 * S, "a")]).ok  # burst 11: one used, not limited
    assert store.take_now([Cell("a:new", S, 10 * S, "a")]).ok


async def test_failure_table_keeps_evidence_and_refuses_newcomers():
    t = [0.0]
    store = MemoryStateStore(MemorySettings(max_failure_keys=16), monotonic=lambda: t[0])
    rule = FailureRule(20, 60, 600, 86_400, 600)
    for i in range(16):
        await store.record_failures([(f"k{i}", rule)])
    assert (await store.record_failures([("new", rule)]))[0].failures == 0 and store.refused_failures == 1
    t[0] += 601  # the old failures aged out
    assert (await store.record_failures([("new", rule)]))[0].failures == 1


async def test_policy_records_reach_subscribers_and_the_limit_holds():
    store = MemoryStateStore(MemorySettings(max_policy_records=16))
    seen = []
    store.subscribe("ns", seen.append)
    for i in range(16):
        await store.put_policy("ns", f"k{i}", i, "cli")
    with pytest.raises(ValueError):
        await store.put_policy("ns", "one-more", 1, "cli")
    await store.put_policy("ns", "k0", None, "cli")  # an existing key may still change
    assert len(seen) == 17 and seen[-1].value is None
    assert len(await store.policy_records("ns")) == 15
