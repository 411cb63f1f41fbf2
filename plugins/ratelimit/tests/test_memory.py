"""Bounded memory: a flood of IPv6 sources (twice the table cap), each in its own /48 (so every address table sees a
fresh key), and limited addresses stay limited."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from swqos_core.errors import Rejection
from swqos_ratelimit.gcra import retry_after_seconds
from swqos_ratelimit.limiter import GcraRateLimiter
from swqos_ratelimit.settings import GcraSettings

from .helpers import MS, SIGN, FakeClock, v6_48

#: The stated bound, at a fifth of the production cap so the suite stays fast (tracemalloc slows
#: every allocation): peak Python allocations of the limiter while twice the cap of fresh /48s
#: arrive, six address tables (every RPC and handshakes, per /64, /56 and /48). At the production
#: cap of 100,000 it measured about 100 MiB (README.md, "Bounded memory"); memory is linear in
#: the cap, so the bound is 128 MiB scaled by the same fifth, with headroom for dict resizing.
CAP = 20_000
BOUND_BYTES = 128 * 1024 * 1024 * CAP // 100_000
SOURCES = 2 * CAP


@pytest.mark.slow
async def test_a_flood_of_ipv6_sources_stays_under_the_bound_and_limited_stay_limited():
    clock = FakeClock()
    lim = GcraRateLimiter(GcraSettings(max_tracked_addresses=CAP), clock=clock)

    # Ten addresses that have spent their handshake burst (8) and are being refused.
    limited = [v6_48(SOURCES + i) for i in range(10)]
    for c in limited:
        for _ in range(8):
            await lim.check_address(SIGN, c)
    before = []
    for c in limited:
        try:
            await lim.check_address(SIGN, c)
        except Rejection as r:
            before.append((r.label, r.retry_after))
    assert before == [("address_handshakes", 7.5)] * 10
    tats = [await lim._hs_store.get(c.key) for c in limited]

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    refused_full = 0
    for i in range(SOURCES):
        # 1 ns apart: the whole flood happens while the ten are still limited.
        clock.advance(1)
        try:
            await lim.check_address(SIGN, v6_48(i))
        except Rejection as r:
            assert r.label == "address_table_full"
            refused_full += 1
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"limiter peak {(peak - base) / 2**20:.1f} MiB, end {(current - base) / 2**20:.1f} MiB")
    assert peak - base < BOUND_BYTES, f"peak {(peak - base) / 2**20:.1f} MiB"
    st = lim.stats()["tables"]
    for table in ("address_rate", "address_handshakes", "address_rate_56", "address_rate_48",
                  "address_handshakes_56", "address_handshakes_48"):
        assert st[table]["tracked"] <= CAP, table
    # Fresh keys are not limited, so they are evicted for newcomers: none was refused.
    assert refused_full == 0
    assert st["address_handshakes"]["evicted"] > 0

    # The limited ten were neither evicted nor reset: same state, same refusal.
    assert [await lim._hs_store.get(c.key) for c in limited] == tats
    after = []
    for c in limited:
        try:
            await lim.check_address(SIGN, c)
        except Rejection as r:
            after.append((r.label, r.retry_after))
    assert after == [("address_handshakes", retry_after_seconds(7_500 * MS - SOURCES))] * 10
