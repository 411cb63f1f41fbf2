"""IPv6 /56 and /48 aggregates (issue 13): a /48 holder does not get 65,536 fresh quotas; and the
limiter on a shared store: one round trip per call, per-replica fallback when the store fails."""

from __future__ import annotations

import ipaddress

import grpc
import pytest

from swqos_core.errors import Rejection
from swqos_core.layers import ClientAddress
from swqos_core.store import MemoryStateStore, StoreUnavailable
from swqos_ratelimit.limiter import GcraRateLimiter
from swqos_ratelimit.settings import GcraSettings, Quota

from .helpers import IDENTITY, SIGN, FakeClock, client, trader


def in48(prefix48: int, subnet: int) -> ClientAddress:
    ip = ipaddress.IPv6Address((prefix48 << 80) | (subnet << 64) | 0x1234)
    return ClientAddress(ip, "peer", f"ipv6:[{ip}]:1")


async def passes(coro) -> bool:
    try:
        await coro
        return True
    except Rejection as r:
        assert r.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        return False


async def test_forty_slash64s_of_one_slash48_share_its_handshake_quota():
    lim = GcraRateLimiter(clock=FakeClock())
    base = 0x20010DB80042
    # one handshake from each of 40 /64s in 40 different /56s: each /64 and /56 has room
    got = [await passes(lim.check_address(SIGN, in48(base, i << 8))) for i in range(40)]
    assert got.count(True) == 32  # the /48's quota (32/min, burst 32), not 40 x 8
    try:
        await lim.check_address(SIGN, in48(base, 0xFFFF))
    except Rejection as r:
        assert r.label == "address_handshakes_48" and r.retry_after and "/48" in r.reason
    else:
        raise AssertionError("the /48 should be limited")
    assert await passes(lim.check_address(SIGN, in48(base + 1, 0)))  # the next /48 is fresh
    assert await passes(lim.check_address(SIGN, client("203.0.113.9")))  # IPv4 has no aggregates


async def test_slash56_quota_and_its_label():
    lim = GcraRateLimiter(GcraSettings(handshakes_56=Quota(3, 60.0, 3)), clock=FakeClock())
    base = 0x20010DB80043
    got = [await passes(lim.check_address(SIGN, in48(base, i))) for i in range(5)]  # 5 /64s of one /56
    assert got == [True, True, True, False, False]
    assert lim.refused["address_handshakes_56"] == 2


async def test_every_rpc_counts_against_the_aggregate_rate():
    lim = GcraRateLimiter(GcraSettings(address_48=Quota(5, 1.0, 5)), clock=FakeClock())
    base = 0x20010DB80044
    got = [await passes(lim.check_address(IDENTITY, in48(base, i << 8))) for i in range(7)]
    assert got == [True] * 5 + [False] * 2


async def test_an_override_for_a_slash48_raises_its_quota():
    from pathlib import Path

    from swqos_core.schema import build

    problems: list[str] = []
    s = build(GcraSettings, {"addresses": {"2001:db8:45::/48": {"handshakes": {"count": 100, "period": 60,
                                                                               "burst": 100}}}},
              where="gcra", base_dir=Path("."), problems=problems)
    assert problems == []
    lim = GcraRateLimiter(s, clock=FakeClock())
    base = 0x20010DB80045
    got = [await passes(lim.check_address(SIGN, in48(base, i << 8))) for i in range(40)]
    assert all(got)


async def test_aggregates_can_be_turned_off():
    lim = GcraRateLimiter(GcraSettings(ipv6_aggregates=False), clock=FakeClock())
    base = 0x20010DB80046
    assert all([await passes(lim.check_address(SIGN, in48(base, i << 8))) for i in range(40)])


async def test_a_refused_aggregate_costs_the_address_nothing():
    """All or nothing: the /64's own cells are untouched when its /48 refuses."""
    clock = FakeClock()
    lim = GcraRateLimiter(GcraSettings(handshakes_48=Quota(1, 60.0, 1)), clock=clock)
    base = 0x20010DB80048
    await lim.check_address(SIGN, in48(base, 1 << 8))
    c = in48(base, 2 << 8)
    before = await lim._hs_store.get(c.key)
    assert not await passes(lim.check_address(SIGN, c))
    assert await lim._hs_store.get(c.key) == before


class FlakyStore:
    """A shared store (not the in-process one) that can be switched off: a network store's failures."""

    name = "flaky"
    shared = True

    def __init__(self, replicas: int = 3) -> None:
        self.inner = MemoryStateStore()
        self.replicas = replicas
        self.down = False
        self.takes: list[list[str]] = []  # the labels of each take's cells

    async def take(self, cells):
        self.takes.append([c.label for c in cells])
        if self.down:
            raise StoreUnavailable("flaky: connection refused")
        return self.inner.take_now(cells)

    def subscribe(self, namespace, callback):
        self.inner.subscribe(namespace, callback)

    async def put_policy(self, namespace, key, value, actor):
        if self.down:
            raise StoreUnavailable("flaky: connection refused")
        return await self.inner.put_policy(namespace, key, value, actor)


async def test_one_store_round_trip_per_call():
    store = FlakyStore()
    lim = GcraRateLimiter(store=store, clock=FakeClock())  # type: ignore[arg-type]
    c = in48(0x20010DB80047, 1)
    await lim.check_address(SIGN, c)  # before authentication: this replica's tables only
    assert store.takes == [] and len(lim._addr_store) == 1
    await lim.check_principal(SIGN, trader("t"), c)  # the six address cells and the trader's two
    assert store.takes == [["address_rate", "address_handshakes", "address_rate_56", "address_handshakes_56",
                            "address_rate_48", "address_handshakes_48", "trader_rate", "trader_sustained"]]
    await lim.check_address(IDENTITY, c)  # GetIdentity ends at authentication: its take is here
    assert store.takes[1] == ["address_rate", "address_rate_56", "address_rate_48"]
    assert len(lim._trader_store) == 0  # trader cells never live locally while the store answers


async def test_address_quota_is_fleet_wide_for_signatures():
    store = FlakyStore()
    s = GcraSettings(handshakes=Quota(6, 3600.0, 6))
    a, b = (GcraRateLimiter(s, store=store, clock=FakeClock()) for _ in range(2))  # type: ignore[arg-type]
    c = client("203.0.113.5")

    async def sign_through(lim: GcraRateLimiter, sub: str) -> bool:
        return await passes(lim.check_address(SIGN, c)) and await passes(lim.check_principal(SIGN, trader(sub), c))

    got = [await sign_through(a if i % 2 else b, f"t{i}") for i in range(10)]
    assert got.count(True) == 6  # one address's handshakes across both replicas, not 6 each
    assert a.refused["address_handshakes"] + b.refused["address_handshakes"] == 4
    # A refused take consumed nothing: the traders' own quotas are untouched.
    assert await passes(a.check_principal(SIGN, trader("t1"), client("203.0.113.6")))


async def test_before_authentication_a_flood_meets_the_local_tables_at_the_configured_rate():
    store = FlakyStore()
    lim = GcraRateLimiter(GcraSettings(address=Quota(5, 1.0, 5)), store=store, clock=FakeClock())  # type: ignore[arg-type]
    c = client("203.0.113.7")
    got = [await passes(lim.check_address(SIGN, c)) for _ in range(8)]  # bad credentials never get further
    assert got.count(True) == 5 and store.takes == []
    store.down = True
    await passes(lim.check_principal(SIGN, trader("t"), client("203.0.113.8")))  # the store fails once
    other = client("203.0.113.9")
    got = [await passes(lim.check_address(SIGN, other)) for _ in range(5)]
    assert got.count(True) == 1  # while it is away: 5 divided by the 3 replicas (burst 1)


async def test_store_failure_falls_back_to_per_replica_quotas_and_recovers(caplog):
    store = FlakyStore(replicas=3)
    loose = Quota(1000, 1.0, 1000)  # the trader's quota is the one under test
    s = GcraSettings(trader=Quota(30, 3600.0, 30), address=loose, handshakes=loose)
    lim = GcraRateLimiter(s, store=store, clock=FakeClock())  # type: ignore[arg-type]
    c, t = client("203.0.113.1"), trader("t")
    store.down = True
    got = [await passes(lim.check_principal(SIGN, t, c)) for _ in range(15)]
    assert got.count(True) == 10  # 30 divided by the 3 replicas
    assert lim.fallbacks == 15 and lim.stats()["store_fallbacks"] == 15
    assert "divided by 3" in caplog.text
    store.down = False
    got = [await passes(lim.check_principal(SIGN, t, c)) for _ in range(31)]
    assert got.count(True) == 30  # the store's own (fleet) quota again


async def test_quota_overrides_are_policy_records():
    store = MemoryStateStore()
    lim = GcraRateLimiter(store=store, clock=FakeClock())
    other = GcraRateLimiter(store=store, clock=FakeClock())  # a second subscriber (another layer)
    eff = await lim.persist_trader_quota("t", rate={"count": 5, "period": 60, "burst": 5}, actor="token:ops")
    assert eff["source"] == "runtime" and eff["rate"]["burst"] == 5
    assert other.trader_quota("t")["rate"]["burst"] == 5
    [rec] = await store.policy_records("ratelimit.quota")
    assert rec.key == "t" and rec.actor == "token:ops"
    with pytest.raises(ValueError):
        await lim.persist_trader_quota("t", rate={"count": -1}, actor="token:ops")
    assert (await store.policy_records("ratelimit.quota"))[0].version == rec.version  # nothing written
    assert await lim.persist_clear_trader_quota("t", actor="token:ops")
    assert other.trader_quota("t")["source"] == "default"
    assert await store.policy_records("ratelimit.quota") == []


class CellRecordingStore(FlakyStore):
    """FlakyStore that also keeps every take's Cell objects."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[list] = []

    async def take(self, cells):
        self.cells.append(list(cells))
        return await super().take(cells)


async def test_a_repeat_caller_reuses_its_cells_until_its_quota_changes(monkeypatch):
    from swqos_ratelimit import limiter

    monkeypatch.setattr(limiter, "MAX_REMEMBERED", 8)
    store = CellRecordingStore()
    lim = GcraRateLimiter(store=store, clock=FakeClock())  # type: ignore[arg-type]
    c = client("192.0.2.7")
    for _ in range(2):
        await lim.check_principal(SIGN, trader("t"), c)
    first, second = store.cells
    assert all(a is b for a, b in zip(first, second, strict=True))  # the same immutable Cells
    lim.set_trader_quota("t", rate=Quota(120, 60.0, 120))
    await lim.check_principal(SIGN, trader("t"), c)
    changed = {cell.label: cell for cell in store.cells[-1]}
    assert changed["trader_rate"].interval_ns == 10**9 // 2  # the new quota, not the remembered Cell
    assert changed["trader_rate"].key == first[-2].key
    for i in range(30):  # many callers: the memos are cleared when full, never larger
        await lim.check_principal(SIGN, trader(f"t{i}"), client(f"198.51.100.{i}"))
        assert len(lim._cells_of) <= 8 and len(lim._checks_of) <= 8


async def test_an_address_stays_limited_while_the_memos_are_cleared(monkeypatch):
    from swqos_ratelimit import limiter

    monkeypatch.setattr(limiter, "MAX_REMEMBERED", 4)
    lim = GcraRateLimiter(GcraSettings(handshakes=Quota(2, 60.0, 2)), clock=FakeClock())
    spent = client("192.0.2.9")
    assert [await passes(lim.check_address(SIGN, spent)) for _ in range(3)] == [True, True, False]
    for i in range(20):
        assert await passes(lim.check_address(SIGN, client(f"198.51.100.{i}")))
        assert len(lim._checks_of) <= 4
    assert not await passes(lim.check_address(SIGN, spent))
