"""The edge-gated client-address rule every CDN resolver shares."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from swqos_cdn.addresses import NEVER_A_CLIENT, non_global_kind
from swqos_cdn.ranges import MAX_HEADER_VALUE, RangeError, RangeSet, Snapshot, load_best
from swqos_cdn.refresh import CdnProvider, refresh
from swqos_core.errors import ConfigError, invalid_argument, permission_denied
from swqos_core.layers import ClientAddress, RequestHead
from swqos_core.net import IPAddress, embedded_ipv4, parse_ip, parse_peer

#: Outcomes of a range refresh, the ``outcome`` label of ``swqos_cdn_refreshes``.
REFRESH_OUTCOMES = ("updated", "unchanged", "refused", "failed")

log = logging.getLogger("swqos.cdn")


@dataclass
class EdgeSettings:
    """Settings every edge-gated resolver has. A plugin's settings class subclasses this."""

    #: Refuse (PERMISSION_DENIED) any connection whose TCP peer is not a CDN edge.
    require_cdn: bool = True
    #: Refreshed range snapshot (written by ``swqos cdn refresh``); the shipped one if absent.
    ranges_file: Path | None = None
    #: More CIDRs to treat as edges (e.g. a load balancer in between; tests use 127.0.0.0/8).
    extra_trusted_ranges: list[str] = field(default_factory=list)
    #: Seconds between in-process refreshes of the ranges; 0 turns it off.
    refresh_interval: float = 0.0
    #: Where to refresh from; the provider's published URL when unset.
    refresh_url: str | None = None
    refresh_timeout: float = 10.0
    #: CA bundle for the refresh URL (system store when unset).
    refresh_ca_file: Path | None = None
    #: Staging only: accept client addresses that are not globally routable (private, loopback,
    #: documentation, ...) from an edge. Unspecified, multicast and broadcast stay refused.
    allow_non_global: bool = False

    def __post_init__(self) -> None:
        if self.refresh_interval and self.refresh_interval < 1.0:
            raise ValueError("refresh_interval must be 0 (off) or at least 1 second")
        if not 0 < self.refresh_timeout <= 120:
            raise ValueError("refresh_timeout must be between 0 and 120 seconds")
        try:
            RangeSet.parse(self.extra_trusted_ranges, where="extra_trusted_ranges", allow_special=True)
        except RangeError as exc:
            raise ValueError(str(exc)) from None


class EdgeResolver:
    """A client-IP resolver that believes a CDN header only from a CDN edge.

    Subclasses implement :meth:`client_ip`; may override :meth:`check_connection` (e.g. to
    require the CDN's client certificate).
    """

    def __init__(self, settings: EdgeSettings, provider: CdnProvider, *, name: str, logger: logging.Logger) -> None:
        self.settings = settings
        self.provider = provider
        self.name = name
        self.log = logger
        try:
            self.snapshot = load_best(provider.shipped(), settings.ranges_file)
            self.ranges = self.snapshot.ranges
        except RangeError as exc:
            raise ConfigError(str(exc)) from None
        self.extra = RangeSet.parse(settings.extra_trusted_ranges, allow_special=True)
        self._task: asyncio.Task[None] | None = None
        self._refresh_lock = asyncio.Lock()
        #: Refreshes by outcome (REFRESH_OUTCOMES), and when the last one ran (Unix seconds).
        self.refreshes: Counter[str] = Counter()
        self.last_refresh: float | None = None

    # -- the rule
    def is_edge(self, ip: IPAddress | None) -> bool:
        return ip is not None and (ip in self.ranges or ip in self.extra)

    def edge_peer(self, peer: str) -> IPAddress | None:
        """The TCP peer's address if it is an edge, else None.

        A 6to4 or IPv4-compatible spelling of an edge address is no edge: the CDN connects from
        its real address (or, on a dual-stack socket, ``::ffff:a.b.c.d``; behind a NAT64/SIIT
        translator, ``64:ff9b::a.b.c.d``), and the return path of a 6to4 address runs through
        whichever relay routes 2002::/16, not through the CDN.
        """
        ip = parse_peer(peer)
        if not self.is_edge(ip):
            return None
        if ip is not None and ip.version == 4 and peer.startswith("ipv6:"):
            host = unquote(peer[len("ipv6:"):])  # grpcio writes ipv6:%5B...%5D:port
            host = host[1:].partition("]")[0] if host.startswith("[") else host
            raw = parse_ip(host, fold=False)
            embedded = embedded_ipv4(raw) if raw is not None else None
            if embedded is None or embedded[0] not in ("mapped", "nat64"):
                return None
        return ip

    async def resolve(self, head: RequestHead) -> ClientAddress | None:
        peer = self.edge_peer(head.peer)
        if peer is None:
            if self.settings.require_cdn:
                raise permission_denied(
                    f"connection did not come through {self.provider.title}", label=f"{self.name}_not_edge"
                )
            return None  # headers from a non-edge are never read: the peer address stands
        self.check_connection(head)
        ip = self.client_ip(head)
        if self.is_edge(ip):
            # A CDN address as the client is the CDN talking to itself (another customer's
            # Worker, a loop): not a client we can attribute or rate-limit.
            raise permission_denied(
                f"client address is inside {self.provider.title}'s own ranges", label=f"{self.name}_client_is_edge"
            )
        kind = non_global_kind(ip)
        if kind is not None and (kind in NEVER_A_CLIENT or not self.settings.allow_non_global):
            # A CDN's client is on the internet. A private, loopback or documentation address here
            # is a broken edge or a forgery, and would pool every such caller in one bucket.
            raise permission_denied(f"{self.provider.title} client address {ip} is not globally routable ({kind})",
                                    label=f"{self.name}_client_{kind}")
        return ClientAddress(ip, self.name, head.peer)

    def check_connection(self, head: RequestHead) -> None:
        """Extra checks on a connection from an edge; raise a Rejection to refuse."""

    def client_ip(self, head: RequestHead) -> IPAddress:
        """Return the client address the CDN names in ``head``; raise a Rejection if it names
        none, several, or something that is not an address."""
        raise NotImplementedError

    # -- header helpers for subclasses
    def single_header(self, head: RequestHead, name: str) -> str | None:
        """The one value of ``name``; None if absent; INVALID_ARGUMENT if repeated."""
        values = head.header_values(name)
        if any(k == name for k, v in head.metadata if not isinstance(v, str)):
            raise invalid_argument(f"{name} must be text", label=f"{self.name}_bad_header")
        if len(values) > 1:
            raise invalid_argument(f"{name} appears more than once", label=f"{self.name}_bad_header")
        return values[0] if values else None

    def require_header(self, head: RequestHead, name: str) -> str:
        value = self.single_header(head, name)
        if value is None:
            raise invalid_argument(f"{name} is missing on a request from {self.provider.title}",
                                   label=f"{self.name}_no_header")
        return value

    def parse_address(self, value: str, header: str, *, fold: bool = True) -> IPAddress:
        """Exactly one IP address, nothing else (no list, no port, no zone id). IPv6 spellings of
        an IPv4 address are folded to it unless ``fold`` is false (then :func:`fold_mapped` later)."""
        ip = parse_ip(value, fold=fold) if len(value) <= MAX_HEADER_VALUE and value == value.strip() else None
        if ip is None:
            raise invalid_argument(f"{header} is not one IP address", label=f"{self.name}_bad_header")
        return ip

    def parse_address_port(self, value: str, header: str) -> IPAddress:
        """``ip:port``, ``[ipv6]:port`` or unbracketed ``ipv6:port`` (split at the last colon)."""
        bad = invalid_argument(f"{header} is not one address:port", label=f"{self.name}_bad_header")
        if len(value) > MAX_HEADER_VALUE or value != value.strip():
            raise bad
        if value.startswith("["):
            host, sep, rest = value[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise bad
            port = rest[1:]
        else:
            host, sep, port = value.rpartition(":")
            if not sep:
                raise bad
        if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
            raise bad
        ip = parse_ip(host) if host and host == host.strip() else None
        if ip is None:
            raise bad
        return ip

    def rightmost_untrusted(self, head: RequestHead, header: str = "x-forwarded-for") -> IPAddress:
        """Walk a single X-Forwarded-For header right to left, skipping edges; the first other
        entry is the client. Every entry must parse: the part we read is written by the CDN."""
        value = self.require_header(head, header)
        if len(value) > 8 * MAX_HEADER_VALUE or value != value.strip():
            raise invalid_argument(f"{header} is too long or padded", label=f"{self.name}_bad_header")
        for entry in reversed(value.split(",")):
            ip = self.parse_address(entry.strip(), header)
            if not self.is_edge(ip):
                return ip
        raise permission_denied(f"{header} names only {self.provider.title} addresses",
                                label=f"{self.name}_client_is_edge")

    # -- refresh
    def apply(self, snap: Snapshot) -> None:
        ranges = snap.ranges
        # one assignment each: a concurrent resolve() sees the old set or the new one
        self.snapshot, self.ranges = snap, ranges

    async def refresh_now(self) -> bool:
        """Fetch the published list once. True if a new list is in use; False (and the old
        list kept, with a log line) on any failure."""
        async with self._refresh_lock:
            outcome = await self._refresh_once()
            self.refreshes[outcome] += 1
            self.last_refresh = time.time()
            return outcome == "updated"

    async def _refresh_once(self) -> str:
        """One refresh; the outcome (REFRESH_OUTCOMES). Never raises: the list in use stays on failure."""
        s = self.settings
        try:
            status, snap = await asyncio.to_thread(
                refresh, self.provider, url=s.refresh_url, previous=self.snapshot, path=s.ranges_file,
                timeout=s.refresh_timeout, ca_file=s.refresh_ca_file,
            )
        except RangeError as exc:
            self.log.warning("%s range refresh refused, keeping the list from %s: %s",
                             self.provider.title, self.snapshot.fetched_at, exc)
            return "refused"
        except Exception as exc:  # a refresh bug must never touch the list in use
            self.log.error("%s range refresh failed, keeping the list from %s: %s: %s",
                           self.provider.title, self.snapshot.fetched_at, type(exc).__name__, exc)
            return "failed"
        if status == "unchanged":
            self.log.info("%s ranges unchanged (%s)", self.provider.title, snap.etag or snap.serial)
            return "unchanged"
        self.apply(snap)
        self.log.info("%s ranges updated: %d IPv4, %d IPv6 (%s)", self.provider.title,
                      len(snap.ipv4), len(snap.ipv6), snap.etag or snap.serial)
        return "updated"

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_interval)
            await self.refresh_now()

    async def start(self) -> None:
        if self.settings.refresh_interval and self._task is None:
            self._task = asyncio.create_task(self._refresh_loop(), name=f"{self.name}-range-refresh")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def ranges_age(self, now: float | None = None) -> float | None:
        """Seconds since the list in use was fetched (None if its timestamp does not parse)."""
        try:
            fetched = dt.datetime.strptime(self.snapshot.fetched_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return None
        return max(0.0, (time.time() if now is None else now) - fetched.timestamp())

    def describe(self, now: float | None = None) -> dict[str, Any]:
        """What the status view and ``reload-cdn`` show: the list in use, where it came from, its age."""
        age = self.ranges_age(now)
        return {"provider": self.provider.name, "source": self.snapshot.source,
                "fetched_at": self.snapshot.fetched_at,
                "age_seconds": None if age is None else round(age),
                "serial": self.snapshot.serial, "etag": self.snapshot.etag,
                "ipv4": len(self.snapshot.ipv4), "ipv6": len(self.snapshot.ipv6),
                "require_cdn": self.settings.require_cdn, "allow_non_global": self.settings.allow_non_global,
                "refresh_interval": self.settings.refresh_interval,
                "refreshes": {k: self.refreshes[k] for k in REFRESH_OUTCOMES}}
