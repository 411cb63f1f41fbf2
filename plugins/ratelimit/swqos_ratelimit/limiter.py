"""The ``gcra`` rate limiter: per address and handshakes before auth, per trader after.

Four limits, each a GCRA table (:mod:`swqos_ratelimit.gcra`, :mod:`swqos_ratelimit.store`):

======================== ================================ ===================== ====================
limit (label)            key                              counts                checked
======================== ================================ ===================== ====================
address_rate             client address (/32, /64)        every RPC             ``check_address``
address_rate_56, _48     the IPv6 client's /56, /48       every RPC             ``check_address``
address_handshakes       client address                   SignCertificateVerify ``check_address``
address_handshakes_56/48 the IPv6 client's /56, /48       SignCertificateVerify ``check_address``
trader_rate              verified ``sub``                 SignCertificateVerify ``check_principal``
trader_sustained         verified ``sub``                 SignCertificateVerify ``check_principal``
======================== ================================ ===================== ====================

The limits of one stage are decided together and consumed only if all admit, so a request
refused by one limit costs nothing against the others. The trader limits are only reached with a
Principal, which only an authenticator creates after verifying the credential: a claimed but
unverified ``sub`` never touches that trader's quota.

Where the cells live: with the in-process store (``[pipeline] store = "memory"``) in this
object's own tables (:mod:`swqos_ratelimit.store`); with a persistent or shared store (sqlite,
redis) in that store, in one :meth:`~swqos_core.store.StateStore.take` round trip per call: a
signature's address and trader cells are taken together after authentication (the threat
model's order: authentication, then per-IP and per-trader limits), all or nothing; before
authentication the local tables alone shield the authenticator from an address's flood, at the
configured rate. A GetIdentity call, which ends at authentication, takes its address cells from
the store before it. When a shared store fails, the limits fall back to the local tables with
every quota divided by the store's ``replicas`` (logged, counted), and go back to the store when
it answers again.
Runtime trader quota overrides are policy records in the store: they survive a restart and apply
on every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swqos_core.errors import ConfigError, Rejection, resource_exhausted
from swqos_core.layers import BuildContext, ClientAddress, Principal, RequestHead
from swqos_core.net import address_key, fold_mapped
from swqos_core.store import Cell, MemoryStateStore, PolicyRecord, StateStore, StoreUnavailable
from swqos_ratelimit.gcra import Clock, Rate, check, monotonic_clock, retry_after_seconds
from swqos_ratelimit.settings import AddressOverride, GcraSettings, Quota, TraderOverride
from swqos_ratelimit.store import Key, MemoryTatStore, StoreFull, TatStore

log = logging.getLogger("swqos.rate_limit.gcra")

#: Compare-and-set retries before giving up (only a shared store can race; refusing is fail-closed).
MAX_CAS_ATTEMPTS = 8
#: Runtime per-trader overrides the admin API may set; bounded like everything else.
MAX_RUNTIME_OVERRIDES = 100_000
#: Entries of each of the limiter's memos (an address's checks, a cell's Cell); cleared when full.
MAX_REMEMBERED = 16_384
#: Policy-record namespace of runtime trader quotas.
QUOTA_NAMESPACE = "ratelimit.quota"
#: IPv6 aggregate prefix lengths counted besides the /64.
AGGREGATES = (56, 48)
_LOW64 = (1 << 64) - 1

_REASONS = {
    "address_rate": "too many requests from this address",
    "address_handshakes": "too many handshakes from this address",
    "address_rate_56": "too many requests from this address's /56",
    "address_rate_48": "too many requests from this address's /48",
    "address_handshakes_56": "too many handshakes from this address's /56",
    "address_handshakes_48": "too many handshakes from this address's /48",
    "trader_rate": "too many handshakes for this trader",
    "trader_sustained": "trader's sustained handshake quota is spent",
    "address_table_full": "too many client addresses are being limited; retry later",
    "trader_table_full": "too many traders are being limited; retry later",
    "contention": "rate limiter busy; retry",
}


@dataclass(frozen=True, slots=True)
class _Limit:
    label: str
    store: TatStore
    full_label: str


def _address_override_key(text: str) -> tuple[int, Key]:
    """``"203.0.113.7"``, ``"2001:db8::1"`` or ``"2001:db8:1:2::/64"`` (also /56, /48) -> (level, key):
    level 0 is the address bucket itself (/32 or /64), 56 and 48 the IPv6 aggregates."""
    if "/" in text:
        net = ipaddress.ip_network(text, strict=False)
        allowed = (32,) if net.version == 4 else (64, *AGGREGATES)
        if net.prefixlen not in allowed:
            raise ValueError(f"address override {text!r}: only IPv4 /32 or IPv6 /64, /56, /48 buckets are keyed")
        ip = net.network_address
        if net.version == 6 and net.prefixlen in AGGREGATES:
            return net.prefixlen, (int(ip) >> 64) >> (64 - net.prefixlen)
    else:
        ip = ipaddress.ip_address(text)
    return 0, address_key(fold_mapped(ip))


def aggregate_key(key: Key, bits: int) -> int | None:
    """The /56 or /48 of an IPv6 /64 address key (bit 128 tags IPv6 keys; see address_key)."""
    if isinstance(key, int) and key >> 128 == 1:
        return (key & _LOW64) >> (64 - bits)
    return None


class GcraRateLimiter:
    """Implements :class:`swqos_core.layers.RateLimiter`. One instance per host-proxy."""

    def __init__(
        self,
        settings: GcraSettings | None = None,
        *,
        clock: Clock = monotonic_clock,
        store: StateStore | None = None,
        address_store: TatStore | None = None,
        handshake_store: TatStore | None = None,
        trader_store: TatStore | None = None,
        sustained_store: TatStore | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        s = settings or GcraSettings()
        self.settings = s
        self.clock = clock
        self.log = logger or log
        self.address_rate = s.address.rate()
        self.handshake_rate = s.handshakes.rate()
        self.trader_rate = s.trader.rate()
        self.sustained_rate = s.trader_sustained.rate()

        self.agg_rates = {56: (s.address_56.rate(), s.handshakes_56.rate()),
                          48: (s.address_48.rate(), s.handshakes_48.rate())}
        self.aggregates = AGGREGATES if s.ipv6_aggregates else ()

        problems: list[str] = []
        self._addr_overrides: dict[Key, tuple[Rate, Rate]] = {}
        self._agg_overrides: dict[int, dict[Key, tuple[Rate, Rate]]] = {bits: {} for bits in AGGREGATES}
        for text, ov in s.addresses.items():
            try:
                level, key = _address_override_key(text)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if level:
                d = self.agg_rates[level]
                self._agg_overrides[level][key] = (ov.rate.rate() if ov.rate else d[0],
                                                   ov.handshakes.rate() if ov.handshakes else d[1])
            else:
                self._addr_overrides[key] = self._address_rates(ov)
        if problems:
            raise ValueError("; ".join(problems))
        self._config_traders: dict[str, tuple[Rate, Rate]] = {
            sub: self._trader_rates(ov) for sub, ov in s.traders.items()
        }
        self._runtime_traders: dict[str, tuple[Rate, Rate]] = {}

        cap_a, cap_t = s.max_tracked_addresses, s.max_tracked_traders
        self._addr_store = address_store or MemoryTatStore(
            cap_a, self._addr_tolerance(0), name="address_rate")
        self._hs_store = handshake_store or MemoryTatStore(
            cap_a, self._addr_tolerance(1), name="address_handshakes")
        self._trader_store = trader_store or MemoryTatStore(
            cap_t, lambda k: self._rates_for_trader(str(k))[0].tolerance_ns, name="trader_rate")
        self._sustained_store = sustained_store or MemoryTatStore(
            cap_t, lambda k: self._rates_for_trader(str(k))[1].tolerance_ns, name="trader_sustained")

        self._l_addr = _Limit("address_rate", self._addr_store, "address_table_full")
        self._l_hs = _Limit("address_handshakes", self._hs_store, "address_table_full")
        self._l_trader = _Limit("trader_rate", self._trader_store, "trader_table_full")
        self._l_sustained = _Limit("trader_sustained", self._sustained_store, "trader_table_full")
        #: Per aggregate level: (every-RPC limit, handshake limit), each with its own table.
        self._l_agg: dict[int, tuple[_Limit, _Limit]] = {}
        for bits in AGGREGATES:
            pair = []
            for i, kind in enumerate(("address_rate", "address_handshakes")):
                label = f"{kind}_{bits}"
                table = MemoryTatStore(cap_a, self._agg_tolerance(bits, i), name=label)
                pair.append(_Limit(label, table, "address_table_full"))
            self._l_agg[bits] = (pair[0], pair[1])
        self._full_labels = {lim.label: lim.full_label for lim in self._limits()}
        #: Every table is this process's own (not a shared TatStore): decided without awaiting.
        self._tables_in_memory = all(type(lim.store) is MemoryTatStore for lim in self._limits())
        #: (address key, is a signature) -> its checks: a pure function of the settings, asked
        #: twice per signature with a shared store, so kept (bounded; cleared when full).
        self._checks_of: dict[tuple[Key, bool], tuple[tuple[_Limit, Key, Rate], ...]] = {}
        #: (limit label, key) -> (its rate, its Cell): a Cell is immutable and its key a string to
        #: format, so a repeat caller reuses it while its rate is the same object (bounded too).
        self._cells_of: dict[tuple[str, Key], tuple[Rate, Cell]] = {}

        # A persistent or shared store holds the cells; the in-process one is these tables.
        self.store = store if store is not None and not isinstance(store, MemoryStateStore) else None
        self._divided: dict[Rate, Rate] = {}
        self.fallbacks = 0
        #: The shared store's last take failed: address limits before authentication use the
        #: per-replica share until a take succeeds again.
        self._store_down = False
        self.policy_store = store
        if store is not None:
            store.subscribe(QUOTA_NAMESPACE, self._apply_quota_record)

        self.admitted = {"address": 0, "principal": 0}
        self.refused: dict[str, int] = dict.fromkeys(_REASONS, 0)
        self._sweeper: asyncio.Task[None] | None = None

    # --- quotas --------------------------------------------------------------------------

    def _address_rates(self, ov: AddressOverride) -> tuple[Rate, Rate]:
        return (ov.rate.rate() if ov.rate else self.address_rate,
                ov.handshakes.rate() if ov.handshakes else self.handshake_rate)

    def _trader_rates(self, ov: TraderOverride) -> tuple[Rate, Rate]:
        return (ov.rate.rate() if ov.rate else self.trader_rate,
                ov.sustained.rate() if ov.sustained else self.sustained_rate)

    def _addr_tolerance(self, index: int):
        if not self._addr_overrides:
            return (self.address_rate, self.handshake_rate)[index].tolerance_ns
        default = (self.address_rate, self.handshake_rate)[index].tolerance_ns
        overrides = {k: v[index].tolerance_ns for k, v in self._addr_overrides.items()}
        return lambda k: overrides.get(k, default)

    def _agg_tolerance(self, bits: int, index: int):
        default = self.agg_rates[bits][index].tolerance_ns
        overrides = self._agg_overrides[bits]
        if not overrides:
            return default
        return lambda k: overrides[k][index].tolerance_ns if k in overrides else default

    def _rates_for_trader(self, sub: str) -> tuple[Rate, Rate]:
        found = self._runtime_traders.get(sub) or self._config_traders.get(sub)
        return found or (self.trader_rate, self.sustained_rate)

    # --- the RateLimiter protocol ----------------------------------------------------------

    async def check_address(self, head: RequestHead, client: ClientAddress) -> None:
        checks = self._address_checks(head, client)
        if self.store is None:
            await self._take_local(checks)
        elif head.rpc != "SignCertificateVerify":
            # GetIdentity ends at authentication: its cells go to the store here.
            await self._take_shared(checks, fallback=checks)
        else:
            # A signature's address cells go to the store after authentication, in the same round
            # trip as the trader's (check_principal). Before it, this replica's own tables shield
            # the authenticator from a flood at the configured rate, or at the per-replica share
            # while the store is away (no fleet-wide take is happening then).
            if self._store_down:
                checks = tuple((lim, key, self._per_replica(rate)) for lim, key, rate in checks)
            await self._take_local(checks)
        self.admitted["address"] += 1

    async def check_principal(self, head: RequestHead, principal: Principal, client: ClientAddress) -> None:
        if head.rpc != "SignCertificateVerify":
            return  # trader quotas count signatures (handshakes), nothing else
        trader = self._trader_checks(principal.subject)
        if self.store is None:
            await self._take_local(trader)
        else:
            await self._take_shared(self._address_checks(head, client) + trader, fallback=trader)
        self.admitted["principal"] += 1

    def _address_checks(self, head: RequestHead, client: ClientAddress) -> tuple[tuple[_Limit, Key, Rate], ...]:
        key, sign = client.key, head.rpc == "SignCertificateVerify"
        found = self._checks_of.get((key, sign))
        if found is None:
            if len(self._checks_of) >= MAX_REMEMBERED:
                self._checks_of.clear()
            found = self._checks_of[(key, sign)] = self._address_checks_of(key, sign)
        return found

    def _address_checks_of(self, key: Key, sign: bool) -> tuple[tuple[_Limit, Key, Rate], ...]:
        rates = self._addr_overrides.get(key) if self._addr_overrides else None
        rate, hs_rate = rates or (self.address_rate, self.handshake_rate)
        checks: list[tuple[_Limit, Key, Rate]] = [(self._l_addr, key, rate)]
        if sign:
            checks.append((self._l_hs, key, hs_rate))
        for bits in self.aggregates:
            agg = aggregate_key(key, bits)
            if agg is None:
                break
            l_rate, l_hs = self._l_agg[bits]
            a_rate, a_hs = self._agg_overrides[bits].get(agg) or self.agg_rates[bits]
            checks.append((l_rate, agg, a_rate))
            if sign:
                checks.append((l_hs, agg, a_hs))
        return tuple(checks)

    def _trader_checks(self, sub: str) -> tuple[tuple[_Limit, Key, Rate], ...]:
        rate, sustained = self._rates_for_trader(sub)
        return ((self._l_trader, sub, rate), (self._l_sustained, sub, sustained))

    async def _take_shared(self, checks: tuple[tuple[_Limit, Key, Rate], ...],
                           fallback: tuple[tuple[_Limit, Key, Rate], ...]) -> None:
        """Every cell of the request in one store round trip, all or nothing. When the store
        fails, ``fallback`` (for a signature the trader's cells: its address cells were taken
        locally before authentication) comes from this replica's tables at the per-replica share."""
        assert self.store is not None
        cells = [self._cell(limit, key, rate) for limit, key, rate in checks]
        try:
            taken = await self.store.take(cells)
        except StoreUnavailable as exc:
            self._note_fallback(exc)
            await self._take_local(tuple((lim, key, self._per_replica(rate)) for lim, key, rate in fallback))
            return
        self._store_down = False
        if taken.ok:
            return
        label = taken.label or checks[0][0].label
        raise self._refuse(self._full_labels.get(label, "address_table_full") if taken.full else label,
                           taken.wait_ns)

    def _cell(self, limit: _Limit, key: Key, rate: Rate) -> Cell:
        found = self._cells_of.get((limit.label, key))
        if found is not None and found[0] is rate:
            return found[1]
        if len(self._cells_of) >= MAX_REMEMBERED:
            self._cells_of.clear()
        cell = Cell(f"rl:{limit.label}:{key}", rate.interval_ns, rate.tolerance_ns, limit.label)
        self._cells_of[(limit.label, key)] = (rate, cell)
        return cell

    def _per_replica(self, rate: Rate) -> Rate:
        """The quota one replica may grant alone while the shared store is away: divided by replicas."""
        n = self.store.replicas if self.store is not None else 1
        if n <= 1:
            return rate
        got = self._divided.get(rate)
        if got is None:
            burst = max(1, rate.burst // n)
            interval = rate.interval_ns * n
            got = self._divided[rate] = Rate(interval, interval * (burst - 1), burst)
        return got

    def _note_fallback(self, exc: Exception) -> None:
        self._store_down = True
        self.fallbacks += 1
        if self.fallbacks & (self.fallbacks - 1) == 0:  # powers of two: a line per outage, not per request
            self.log.error("state store unavailable (%s): rate limits use this replica's own tables with quotas "
                           "divided by %d (%d requests so far)", exc, self.store.replicas if self.store else 1,
                           self.fallbacks)

    async def _take_local(self, checks: tuple[tuple[_Limit, Key, Rate], ...]) -> None:
        if self._tables_in_memory:
            self._take_memory(checks)
            return
        await self._take_cas(checks)

    def _take_memory(self, checks: tuple[tuple[_Limit, Key, Rate], ...]) -> None:
        """The in-process tables: decide, make room, then write, without awaiting (so atomic on the
        loop and without the compare-and-set round trips a shared store needs)."""
        now = self.clock()
        planned: list[tuple[_Limit, dict[Key, int], Key, int, bool]] = []
        worst: tuple[int, str] | None = None
        for limit, key, rate in checks:
            table = limit.store.table  # type: ignore[attr-defined]
            tat = table.get(key)
            ok, value = check(tat, now, rate)
            if ok:
                planned.append((limit, table, key, value, tat is None))
            elif worst is None or value > worst[0]:
                worst = (value, limit.label)
        if worst is not None:
            raise self._refuse(worst[1], worst[0])
        for limit, _, _, _, new in planned:
            if new:
                try:
                    limit.store.ensure_room(now)  # type: ignore[attr-defined]
                except StoreFull as full:
                    raise self._refuse(limit.full_label, full.wait_ns) from None
        for _, table, key, value, _ in planned:
            table[key] = value

    async def _take_cas(self, checks: tuple[tuple[_Limit, Key, Rate], ...]) -> None:
        now = self.clock()
        for _ in range(MAX_CAS_ATTEMPTS):
            planned: list[tuple[_Limit, Key, Rate, int | None, int]] = []
            worst: tuple[int, str] | None = None
            for limit, key, rate in checks:
                tat = await limit.store.get(key)
                ok, value = check(tat, now, rate)
                if ok:
                    planned.append((limit, key, rate, tat, value))
                elif worst is None or value > worst[0]:
                    worst = (value, limit.label)
            if worst is not None:
                raise self._refuse(worst[1], worst[0])
            done: list[tuple[_Limit, Key, Rate]] = []
            for limit, key, rate, tat, new in planned:
                try:
                    stored = await limit.store.compare_and_set(key, tat, new, now)
                except StoreFull as full:
                    await self._refund(done, now)
                    raise self._refuse(limit.full_label, full.wait_ns) from None
                if not stored:
                    break
                done.append((limit, key, rate))
            else:
                return
            await self._refund(done, now)  # lost a race (shared store): decide again on fresh values
        raise self._refuse("contention", 1_000_000)

    @staticmethod
    async def _refund(done: list[tuple[_Limit, Key, Rate]], now: int) -> None:
        """Give back the cell just taken from each limit in ``done``.

        GCRA state is a sum of intervals, so returning one cell is ``tat - T`` whatever others
        wrote since (never below ``now``, which means "fresh"). Compare-and-set, retried.
        """
        for limit, key, rate in done:
            for _ in range(MAX_CAS_ATTEMPTS):
                current = await limit.store.get(key)
                if current is None:
                    break
                try:
                    if await limit.store.compare_and_set(key, current, max(current - rate.interval_ns, now), now):
                        break
                except StoreFull:  # cannot happen for a present key; nothing to give back then
                    break

    def _refuse(self, label: str, wait_ns: int) -> Rejection:
        self.refused[label] += 1
        return resource_exhausted(_REASONS[label], retry_after=retry_after_seconds(wait_ns), label=label)

    # --- lifecycle: the expiry sweep --------------------------------------------------------

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="ratelimit-sweep")

    async def close(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sweep(self) -> int:
        """Forget every key that is indistinguishable from a fresh one. Returns how many."""
        now = self.clock()
        total = 0
        for store in self._stores():
            total += await store.sweep(now)
        return total

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                await self.sweep()
            except Exception:  # a failed sweep must not kill the sweeper; the caps still hold
                self.log.exception("rate limiter sweep failed")

    def _limits(self) -> tuple[_Limit, ...]:
        aggs = tuple(lim for pair in self._l_agg.values() for lim in pair)
        return (self._l_addr, self._l_hs, self._l_trader, self._l_sustained, *aggs)

    def _stores(self) -> tuple[TatStore, ...]:
        return tuple(lim.store for lim in self._limits())

    # --- runtime administration (called by the admin API) ------------------------------------

    def set_trader_quota(
        self,
        sub: str,
        *,
        rate: Quota | Mapping[str, Any] | None = None,
        sustained: Quota | Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Give ``sub`` its own quotas until :meth:`clear_trader_quota`; unset ones keep the current
        value. Takes effect on the next request; the trader's current state is kept (no reset).
        Raises ValueError for an invalid quota. Returns the effective quotas."""
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise ValueError("sub must be a non-empty string of at most 256 characters")
        if sub not in self._runtime_traders and len(self._runtime_traders) >= MAX_RUNTIME_OVERRIDES:
            raise ValueError("too many runtime trader overrides")
        cur_rate, cur_sustained = self._rates_for_trader(sub)
        new_rate = _as_quota(rate).rate() if rate is not None else cur_rate
        new_sustained = _as_quota(sustained).rate() if sustained is not None else cur_sustained
        self._runtime_traders[sub] = (new_rate, new_sustained)
        return self.trader_quota(sub)

    async def persist_trader_quota(
        self,
        sub: str,
        *,
        rate: Quota | Mapping[str, Any] | None = None,
        sustained: Quota | Mapping[str, Any] | None = None,
        actor: str,
    ) -> dict[str, Any]:
        """:meth:`set_trader_quota`, kept as a policy record (who, when) in the state store: it
        survives a restart and reaches every replica. Validates first; ValueError writes nothing."""
        effective = self._planned_quota(sub, rate, sustained)
        value = {"rate": _quota_of(effective[0]), "sustained": _quota_of(effective[1])}
        if self.policy_store is not None:
            await self.policy_store.put_policy(QUOTA_NAMESPACE, sub, value, actor)  # applies via the subscription
        else:
            self._runtime_traders[sub] = effective
        return self.trader_quota(sub)

    async def persist_clear_trader_quota(self, sub: str, *, actor: str) -> bool:
        """:meth:`clear_trader_quota`, as a policy record. Returns whether there was an override."""
        had = sub in self._runtime_traders
        if self.policy_store is not None and had:
            await self.policy_store.put_policy(QUOTA_NAMESPACE, sub, None, actor)
        self._runtime_traders.pop(sub, None)
        return had

    def _planned_quota(self, sub: str, rate: Any, sustained: Any) -> tuple[Rate, Rate]:
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise ValueError("sub must be a non-empty string of at most 256 characters")
        if sub not in self._runtime_traders and len(self._runtime_traders) >= MAX_RUNTIME_OVERRIDES:
            raise ValueError("too many runtime trader overrides")
        cur_rate, cur_sustained = self._rates_for_trader(sub)
        return (_as_quota(rate).rate() if rate is not None else cur_rate,
                _as_quota(sustained).rate() if sustained is not None else cur_sustained)

    def _apply_quota_record(self, rec: PolicyRecord) -> None:
        """A quota record from the store (this replica's change or another's)."""
        if rec.value is None:
            self._runtime_traders.pop(rec.key, None)
            return
        try:
            v = rec.value
            self._runtime_traders[rec.key] = (_as_quota(v["rate"]).rate(), _as_quota(v["sustained"]).rate())
        except (KeyError, TypeError, ValueError) as exc:
            self.log.error("ignoring an invalid quota record for a trader: %s", exc)

    def clear_trader_quota(self, sub: str) -> bool:
        """Drop the runtime override of ``sub`` (back to its config override or the default).
        Returns whether there was one."""
        return self._runtime_traders.pop(sub, None) is not None

    def trader_quota(self, sub: str) -> dict[str, Any]:
        rate, sustained = self._rates_for_trader(sub)
        source = ("runtime" if sub in self._runtime_traders
                  else "config" if sub in self._config_traders else "default")
        return {"sub": sub, "source": source, "rate": _describe(rate), "sustained": _describe(sustained)}

    def stats(self) -> dict[str, Any]:
        """Counters and table sizes for the admin API and metrics (no keys, no addresses)."""
        tables = {}
        for store in self._stores():
            name = getattr(store, "name", type(store).__name__)
            entry: dict[str, Any] = {"tracked": len(store)}
            for attr in ("cap", "evicted", "refused_full"):
                if hasattr(store, attr):
                    entry[attr] = getattr(store, attr)
            tables[name] = entry
        return {
            "admitted": dict(self.admitted),
            "refused": dict(self.refused),
            "store_fallbacks": self.fallbacks,
            "tables": tables,
            "quotas": {
                "address_rate": _describe(self.address_rate),
                "address_handshakes": _describe(self.handshake_rate),
                "trader_rate": _describe(self.trader_rate),
                "trader_sustained": _describe(self.sustained_rate),
            },
            "overrides": {
                "addresses": len(self._addr_overrides),
                "traders_config": len(self._config_traders),
                "traders_runtime": len(self._runtime_traders),
            },
        }


def _as_quota(value: Quota | Mapping[str, Any]) -> Quota:
    if isinstance(value, Quota):
        return value
    if not isinstance(value, Mapping) or not set(value) <= {"count", "period", "burst"} or "count" not in value:
        raise ValueError("a quota is {count, period?, burst?}")
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"quota {k} must be a number")
    return Quota(**value)


def _quota_of(rate: Rate) -> dict[str, Any]:
    """A Rate as a quota table that compiles back to the same Rate (count per interval)."""
    return {"count": rate.burst, "period": rate.interval_ns * rate.burst / 1e9, "burst": rate.burst}


def _describe(rate: Rate) -> dict[str, Any]:
    return {"per_second": round(rate.per_second, 6), "burst": rate.burst,
            "interval_s": rate.interval_ns / 1e9}


def build(settings: GcraSettings | None, ctx: BuildContext | None) -> GcraRateLimiter:
    """The registered factory: bad overrides are a startup error, not a failure at first request."""
    try:
        return GcraRateLimiter(settings, logger=ctx.logger if ctx else None, store=ctx.store if ctx else None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
