"""The gcra RateLimiter: which limit counts what, refusals, overrides, runtime API, concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from swqos_core.errors import ConfigError, Rejection
from swqos_core.layers import RateLimiter, RequestHead
from swqos_core.schema import build as build_settings
from swqos_ratelimit.limiter import GcraRateLimiter, build
from swqos_ratelimit.settings import GcraSettings, Quota
from swqos_ratelimit.store import MemoryTatStore

from .helpers import IDENTITY, MS, SIGN, FakeClock, S, client, peer_client, trader


def settings(**table) -> GcraSettings:
    problems: list[str] = []
    s = build_settings(GcraSettings, table, where="gcra", base_dir=Path("."), problems=problems)
    assert problems == []
    return s


def limiter(clock: FakeClock, **table) -> GcraRateLimiter:
    return GcraRateLimiter(settings(**table), clock=clock)


async def outcomes(coro_factory, n: int) -> list[str | None]:
    """Run n checks; None for a pass, the refusal label otherwise."""
    out: list[str | None] = []
    for _ in range(n):
        try:
            await coro_factory()
            out.append(None)
        except Rejection as r:
            assert r.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            out.append(r.label)
    return out


async def refusal(coro) -> Rejection:
    with pytest.raises(Rejection) as exc:
        await coro
    return exc.value


def test_implements_the_protocol():
    assert isinstance(GcraRateLimiter(), RateLimiter)


def test_production_defaults_are_strict():
    s = GcraSettings()
    assert (s.handshakes.count, s.handshakes.period, s.handshakes.burst) == (8, 60.0, 8)
    assert (s.address.count, s.address.period, s.address.burst) == (20, 1.0, 40)
    assert (s.trader.count, s.trader.period, s.trader.burst) == (60, 60.0, 16)
    assert (s.trader_sustained.count, s.trader_sustained.period, s.trader_sustained.burst) == (1200, 3600.0, 600)


async def test_handshake_quota_default_eight_per_minute():
    clock = FakeClock()
    lim = GcraRateLimiter(clock=clock)
    c = client("203.0.113.7")
    got = await outcomes(lambda: lim.check_address(SIGN, c), 10)
    assert got == [None] * 8 + ["address_handshakes"] * 2
    r = await refusal(lim.check_address(SIGN, c))
    assert r.retry_after == 7.5
    assert "handshakes" in r.reason
    clock.advance(7_500 * MS - 1)
    await refusal(lim.check_address(SIGN, c))
    clock.advance(1)
    await lim.check_address(SIGN, c)


async def test_only_sign_counts_as_a_handshake():
    clock = FakeClock()
    lim = limiter(clock, handshakes={"count": 2, "period": 60, "burst": 2})
    c = client("203.0.113.7")
    assert await outcomes(lambda: lim.check_address(IDENTITY, c), 10) == [None] * 10
    assert await outcomes(lambda: lim.check_address(SIGN, c), 3) == [None, None, "address_handshakes"]


async def test_address_rate_counts_every_rpc():
    clock = FakeClock()
    lim = limiter(clock, address={"count": 10, "period": 1, "burst": 3})
    c = client("198.51.100.1")
    got = await outcomes(lambda: lim.check_address(IDENTITY, c), 2) + await outcomes(
        lambda: lim.check_address(SIGN, c), 2)
    assert got == [None, None, None, "address_rate"]
    r = await refusal(lim.check_address(IDENTITY, c))
    assert (r.label, r.retry_after) == ("address_rate", 0.1)


async def test_a_refusal_by_one_limit_consumes_nothing_from_the_other():
    clock = FakeClock()
    lim = limiter(clock, address={"count": 10, "period": 1, "burst": 2},
                  handshakes={"count": 8, "period": 60, "burst": 8})
    c = client("198.51.100.1")
    assert await outcomes(lambda: lim.check_address(SIGN, c), 4) == [None, None, "address_rate", "address_rate"]
    clock.advance(200 * MS)
    # Only 2 handshakes were consumed, so 6 remain (paced by the address rate; 2 s refill nothing).
    passed = 0
    for _ in range(20):
        try:
            await lim.check_address(SIGN, c)
            passed += 1
        except Rejection as r:
            assert r.label in ("address_rate", "address_handshakes")
        clock.advance(100 * MS)
    assert passed == 6


async def test_refusal_reports_the_limit_with_the_longest_wait():
    clock = FakeClock()
    lim = limiter(clock, address={"count": 1, "period": 1, "burst": 1},
                  handshakes={"count": 1, "period": 60, "burst": 1})
    c = client("198.51.100.1")
    await lim.check_address(SIGN, c)
    r = await refusal(lim.check_address(SIGN, c))
    assert (r.label, r.retry_after) == ("address_handshakes", 60.0)


async def test_addresses_are_independent_and_ipv6_is_per_64():
    clock = FakeClock()
    lim = limiter(clock, handshakes={"count": 1, "period": 60, "burst": 1})
    await lim.check_address(SIGN, client("2001:db8:1:2::1"))
    await refusal(lim.check_address(SIGN, client("2001:db8:1:2:ffff::9")))  # same /64
    await lim.check_address(SIGN, client("2001:db8:1:3::1"))  # next /64
    await lim.check_address(SIGN, client("192.0.2.1"))
    await refusal(lim.check_address(SIGN, client("::ffff:192.0.2.1")))  # IPv4-mapped = IPv4
    await lim.check_address(SIGN, client("192.0.2.2"))


@pytest.mark.parametrize("peer", [
    "unix:/run/swqos.sock", "unix-abstract:foo", "vsock:3:5000", "", "garbage", "ipv4:not-an-ip:1",
    "ipv6:[::1", "unix:" + "x" * 10_000, "\x00\xff:%", "ipv6:[fe80::1%eth0]:5",
])
async def test_malformed_and_non_ip_peers_are_keyed_safely(peer):
    clock = FakeClock()
    lim = limiter(clock, handshakes={"count": 2, "period": 60, "burst": 2})
    c = peer_client(peer)
    assert c.ip is None
    key = c.key
    assert isinstance(key, str) and len(key) <= 24
    # They are limited (one shared bucket per transport kind), never a crash and never unlimited.
    assert await outcomes(lambda: lim.check_address(SIGN, c), 3) == [None, None, "address_handshakes"]


async def test_unix_sockets_share_one_bucket_apart_from_ip_clients():
    clock = FakeClock()
    lim = limiter(clock, handshakes={"count": 1, "period": 60, "burst": 1})
    await lim.check_address(SIGN, peer_client("unix:/a"))
    await refusal(lim.check_address(SIGN, peer_client("unix:/b")))
    await lim.check_address(SIGN, client("127.0.0.1"))


async def test_trader_quota_and_sustained_cap():
    clock = FakeClock()
    lim = limiter(clock, trader={"count": 10, "period": 1, "burst": 5},
                  trader_sustained={"count": 20, "period": 3600, "burst": 12})
    c, t = client("192.0.2.1"), trader("trader-1")
    assert await outcomes(lambda: lim.check_principal(SIGN, t, c), 6) == [None] * 5 + ["trader_rate"]
    r = await refusal(lim.check_principal(SIGN, t, c))
    assert (r.label, r.retry_after) == ("trader_rate", 0.1)
    # Staying just under the short quota: the sustained cap ends it after 12 in total.
    got = []
    for _ in range(10):
        clock.advance(100 * MS)
        got += await outcomes(lambda: lim.check_principal(SIGN, t, c), 1)
    assert got == [None] * 7 + ["trader_sustained"] * 3
    r = await refusal(lim.check_principal(SIGN, t, c))
    assert r.label == "trader_sustained"
    # Sustained: 20/hour -> T = 180 s, tau = 11 T; 12 admitted -> tat = 12 T; now = 1.0 s.
    assert r.retry_after == 179.0


async def test_trader_quota_ignores_other_rpcs():
    clock = FakeClock()
    lim = limiter(clock, trader={"count": 1, "period": 60, "burst": 1})
    c, t = client("192.0.2.1"), trader("t")
    for _ in range(5):
        await lim.check_principal(IDENTITY, t, c)
    await lim.check_principal(SIGN, t, c)
    await refusal(lim.check_principal(SIGN, t, c))


async def test_traders_are_independent_and_address_checks_never_touch_trader_quota():
    clock = FakeClock()
    lim = limiter(clock, trader={"count": 1, "period": 60, "burst": 2})
    c = client("192.0.2.1")
    # An attacker claiming sub "victim" in an unverified token only ever reaches check_address
    # (the pipeline calls check_principal only with a verified Principal): no trader state moves.
    for _ in range(50):
        try:
            await lim.check_address(SIGN, c)
        except Rejection:
            pass
    assert len(lim._trader_store) == 0 and len(lim._sustained_store) == 0
    v = trader("victim")
    assert await outcomes(lambda: lim.check_principal(SIGN, v, c), 3) == [None, None, "trader_rate"]
    assert await outcomes(lambda: lim.check_principal(SIGN, trader("other"), c), 2) == [None, None]


async def test_config_trader_override():
    clock = FakeClock()
    lim = limiter(clock, trader={"count": 1, "period": 60, "burst": 1},
                  traders={"premium": {"rate": {"count": 10, "period": 1, "burst": 4}}})
    c = client("192.0.2.1")
    assert await outcomes(lambda: lim.check_principal(SIGN, trader("premium"), c), 5) == [None] * 4 + ["trader_rate"]
    assert await outcomes(lambda: lim.check_principal(SIGN, trader("basic"), c), 2) == [None, "trader_rate"]
    assert lim.trader_quota("premium")["source"] == "config"
    assert lim.trader_quota("premium")["rate"]["burst"] == 4
    assert lim.trader_quota("premium")["sustained"]["burst"] == 600  # unset -> default


async def test_address_override_by_ip_and_by_64():
    clock = FakeClock()
    lim = limiter(clock, handshakes={"count": 1, "period": 60, "burst": 1},
                  addresses={"192.0.2.9": {"handshakes": {"count": 60, "period": 60, "burst": 3}},
                             "2001:db8:9:9::/64": {"handshakes": {"count": 60, "period": 60, "burst": 2}}})
    assert await outcomes(lambda: lim.check_address(SIGN, client("192.0.2.9")), 4) == [None] * 3 + [
        "address_handshakes"]
    assert await outcomes(lambda: lim.check_address(SIGN, client("::ffff:192.0.2.8")), 2) == [
        None, "address_handshakes"]
    assert await outcomes(lambda: lim.check_address(SIGN, client("2001:db8:9:9::77")), 3) == [
        None, None, "address_handshakes"]


@pytest.mark.parametrize("bad", ["not-an-ip", "2001:db8::/40", "192.0.2.0/24"])
def test_bad_address_override_is_a_config_error(bad):
    s = settings(addresses={bad: {"handshakes": {"count": 1}}})
    with pytest.raises(ConfigError):
        build(s, None)


async def test_runtime_trader_quota_set_and_clear_keep_state():
    clock = FakeClock()
    lim = limiter(clock, trader={"count": 1, "period": 60, "burst": 2})
    c, t = client("192.0.2.1"), trader("t")
    assert await outcomes(lambda: lim.check_principal(SIGN, t, c), 3) == [None, None, "trader_rate"]
    eff = lim.set_trader_quota("t", rate={"count": 60, "period": 60, "burst": 4})
    assert eff["source"] == "runtime" and eff["rate"]["burst"] == 4
    # State is kept: tat = now + 2*60 s; with T = 1 s and tau = 3 s the limit stays until ~117 s.
    r = await refusal(lim.check_principal(SIGN, t, c))
    assert r.retry_after == 117.0
    clock.advance(117 * S)
    assert await outcomes(lambda: lim.check_principal(SIGN, t, c), 2) == [None, "trader_rate"]
    assert lim.clear_trader_quota("t") is True
    assert lim.clear_trader_quota("t") is False
    assert lim.trader_quota("t")["source"] == "default"
    # Back to T = 60 s, tau = 60 s with tat = 121 s: one more fits, then refused.
    assert await outcomes(lambda: lim.check_principal(SIGN, t, c), 2) == [None, "trader_rate"]


@pytest.mark.parametrize("bad", [
    {"count": 0}, {"count": 1, "burst": 0}, {"burst": 2}, {"count": "1"}, {"count": 1, "extra": 2},
    {"count": True}, "10/s",
])
def test_runtime_quota_validation(bad):
    lim = GcraRateLimiter()
    with pytest.raises(ValueError):
        lim.set_trader_quota("t", rate=bad)
    assert lim.trader_quota("t")["source"] == "default"


def test_runtime_quota_accepts_a_quota_object_and_validates_sub():
    lim = GcraRateLimiter()
    assert lim.set_trader_quota("t", sustained=Quota(100, 3600.0, 50))["sustained"]["burst"] == 50
    with pytest.raises(ValueError):
        lim.set_trader_quota("", rate=Quota(1))


async def test_stats_count_admits_and_refusals_without_naming_anyone():
    clock = FakeClock()
    lim = limiter(clock, handshakes={"count": 1, "period": 60, "burst": 1})
    c = client("192.0.2.77")
    await lim.check_address(SIGN, c)
    await refusal(lim.check_address(SIGN, c))
    await lim.check_principal(SIGN, trader("secret-sub"), c)
    st = lim.stats()
    assert st["admitted"] == {"address": 1, "principal": 1}
    assert st["refused"]["address_handshakes"] == 1
    assert st["tables"]["address_handshakes"]["tracked"] == 1
    assert st["tables"]["address_rate"]["cap"] == 100_000
    assert "192.0.2.77" not in repr(st) and "secret-sub" not in repr(st)


async def test_sweep_forgets_idle_keys_and_they_come_back_fresh():
    clock = FakeClock()
    lim = limiter(clock, handshakes={"count": 1, "period": 60, "burst": 1})
    for i in range(10):
        await lim.check_address(SIGN, client(f"192.0.2.{i}"))
    await lim.check_principal(SIGN, trader("t"), client("192.0.2.1"))
    assert await lim.sweep() == 0
    clock.advance(3600 * S)
    assert await lim.sweep() == 10 + 10 + 1 + 1
    assert sum(t["tracked"] for t in lim.stats()["tables"].values()) == 0


async def test_start_runs_the_sweeper_and_close_stops_it():
    clock = FakeClock()
    lim = limiter(clock, sweep_interval=0.01)
    await lim.check_address(SIGN, client("192.0.2.1"))
    await lim.start()
    clock.advance(3600 * S)
    for _ in range(200):
        if len(lim._addr_store) == 0:
            break
        await asyncio.sleep(0.01)
    assert len(lim._addr_store) == 0
    await lim.close()
    assert lim._sweeper is None


async def test_many_tasks_on_one_key_admit_exactly_the_quota():
    clock = FakeClock()
    lim = limiter(clock, address={"count": 1000, "period": 1, "burst": 1000},
                  handshakes={"count": 37, "period": 60, "burst": 37})
    c = client("192.0.2.1")

    async def one():
        await asyncio.sleep(0)
        try:
            await lim.check_address(SIGN, c)
            return True
        except Rejection:
            return False

    results = await asyncio.gather(*(one() for _ in range(500)))
    assert sum(results) == 37


class YieldingStore(MemoryTatStore):
    """A store that yields to the loop inside every call, as a networked (shared) store would."""

    async def get(self, key):
        await asyncio.sleep(0)
        return await super().get(key)

    async def compare_and_set(self, key, expected, new, now):
        await asyncio.sleep(0)
        return await super().compare_and_set(key, expected, new, now)


async def test_concurrency_through_a_racing_store_still_admits_exactly_the_quota():
    clock = FakeClock()
    s = settings(address={"count": 1000, "period": 1, "burst": 1000},
                 trader={"count": 60, "period": 60, "burst": 23})
    lim = GcraRateLimiter(
        s, clock=clock,
        address_store=YieldingStore(100, s.address.rate().tolerance_ns),
        handshake_store=YieldingStore(100, s.handshakes.rate().tolerance_ns),
        trader_store=YieldingStore(100, s.trader.rate().tolerance_ns),
        sustained_store=YieldingStore(100, s.trader_sustained.rate().tolerance_ns),
    )
    c, t = client("192.0.2.1"), trader("t")

    async def one(check):
        try:
            await check()
            return "ok"
        except Rejection as r:
            return r.label

    results = await asyncio.gather(*(one(lambda: lim.check_principal(SIGN, t, c)) for _ in range(64)))
    # Losers of a race retry on fresh values; after MAX_CAS_ATTEMPTS they are refused (fail closed),
    # never admitted past the quota.
    assert results.count("ok") <= 23
    assert set(results) <= {"ok", "trader_rate", "contention"}
    # Sequentially, with no race, the rest of the burst is exactly what remains.
    left = await outcomes(lambda: lim.check_principal(SIGN, t, c), 30)
    assert results.count("ok") + left.count(None) == 23


async def test_table_full_of_limited_addresses_refuses_new_ones():
    clock = FakeClock()
    lim = limiter(clock, max_tracked_addresses=8, handshakes={"count": 1, "period": 60, "burst": 1})
    for i in range(8):
        c = client(f"192.0.2.{i}")
        await lim.check_address(SIGN, c)
        await refusal(lim.check_address(SIGN, c))
    # address_rate entries (T = 50 ms) are not limited and get evicted; handshake ones are all limited.
    r = await refusal(lim.check_address(SIGN, client("198.51.100.1")))
    assert r.label == "address_table_full" and r.retry_after == 60.0
    assert "198.51.100.1" not in r.reason
    # Nothing was consumed from the address_rate table by the refused newcomer.
    tat = await lim._addr_store.get(client("198.51.100.1").key)
    assert tat is None or tat <= clock.now  # "fresh": the refund put it back
    # GetIdentity needs no handshake slot: still served.
    await lim.check_address(IDENTITY, client("198.51.100.1"))


def test_factory_registers_and_builds():
    from swqos_ratelimit import plugin

    seen = {}

    def register(name, factory, config=None, **kw):
        seen[name] = (factory, config)

    plugin.swqos_register_rate_limiters(register)
    factory, config = seen["gcra"]
    assert config is GcraSettings
    assert isinstance(factory(GcraSettings(), None), GcraRateLimiter)


def test_dev_settings_are_valid_and_loose():
    from swqos_ratelimit.defaults import dev_notice, dev_settings

    s = settings(**dev_settings())
    for q in (s.address, s.handshakes, s.trader):
        assert q.rate().per_second >= 100_000 and q.burst >= 100_000
    assert "tighten" in dev_notice().lower() or "to tighten" in dev_notice()
    assert dev_settings() is not dev_settings()


def test_settings_errors_are_collected():
    problems: list[str] = []
    build_settings(GcraSettings, {"handshakes": {"count": 8, "burst": 0}, "handshakes_48": {"count": 0},
                                  "typo": 1}, where="gcra", base_dir=Path("."), problems=problems)
    assert len(problems) == 3
    assert any("typo" in p for p in problems)
    assert any("handshakes_48" in p for p in problems) and any("gcra.handshakes:" in p for p in problems)
    problems = []
    build_settings(GcraSettings, {"max_tracked_addresses": 0}, where="gcra", base_dir=Path("."), problems=problems)
    assert len(problems) == 1 and "max_tracked_addresses" in problems[0]


async def test_head_is_only_read_for_the_rpc_name():
    lim = GcraRateLimiter()
    head = RequestHead(rpc="SignCertificateVerify", peer="unix:/x", metadata=(("x-swqos-sub", "victim"),))
    await lim.check_address(head, client("192.0.2.1"))
    assert len(lim._trader_store) == 0
