"""What every CDN plugin shares: edge range sets, range snapshots and their refresh, the
edge-gated client-address rule, the lockdown renderers and the ``swqos cdn`` command group.

A CDN plugin (first-party or third-party) supplies three small things and gets the rest:

- a :class:`CdnProvider`: its name, the URL of its published ranges, a parser for that
  document and the snapshot shipped inside the package;
- a subclass of :class:`EdgeResolver` whose :meth:`EdgeResolver.client_ip` reads the CDN's
  client-address header (the edge check, ``require_cdn``, refresh and the "client is not the
  CDN itself" rule are done here, once);
- one line in its ``swqos_add_commands`` hook: ``add_cdn_provider(subparsers, PROVIDER)``,
  which adds it to ``swqos cdn refresh`` / ``render`` / ``show``.

Trust rule (the nginx ``set_real_ip_from`` model): a client-address header is read only when
the TCP peer is inside the CDN's published ranges. A peer outside them is either ignored
(``require_cdn = false``: the peer address stands) or refused with PERMISSION_DENIED.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from swqos_core.errors import ConfigError, invalid_argument, permission_denied
from swqos_core.files import write_atomic
from swqos_core.layers import ClientAddress, RequestHead
from swqos_core.net import IPAddress, fold_mapped, parse_ip, parse_peer

log = logging.getLogger("swqos.cdn")

IPNetwork = IPv4Network | IPv6Network
SNAPSHOT_FORMAT = "swqos-cdn-ranges/1"
#: Where ``swqos cdn refresh`` writes unless told otherwise; the resolvers' ``ranges_file``.
DEFAULT_STATE_DIR = Path("/var/lib/swqos/cdn")
#: Prefixes broader than these are refused in a published list: no CDN owns a /7 or a /11,
#: and accepting one would open the origin to a large part of the internet (fails open).
MIN_PREFIXLEN = {4: 8, 6: 12}
#: A header value longer than this is never an address; refuse before parsing.
MAX_HEADER_VALUE = 256


class RangeError(Exception):
    """A range list (published, shipped or on disk) was refused. The message says why."""


# --- range sets --------------------------------------------------------------------------


def parse_network(text: object, *, where: str = "", allow_special: bool = False) -> IPNetwork:
    """Parse one CIDR strictly (no host bits, no zone id); refuse over-broad and, unless
    ``allow_special``, non-global (private, loopback, reserved, ...) networks."""
    label = f"{where}: " if where else ""
    if not isinstance(text, str) or not text or len(text) > 64 or "%" in text or text != text.strip():
        raise RangeError(f"{label}{text!r} is not a CIDR")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise RangeError(f"{label}{text!r} is not a valid CIDR (host bits set, or not an address)") from None
    if net.prefixlen < MIN_PREFIXLEN[net.version]:
        raise RangeError(f"{label}{text} is broader than /{MIN_PREFIXLEN[net.version]}: refused as over-broad")
    if not allow_special and not net.is_global:
        raise RangeError(f"{label}{text} is not a public (global) network")
    return net


class RangeSet:
    """An immutable set of IPv4/IPv6 networks with O(log n) membership.

    Networks are collapsed into sorted, disjoint ``[start, end]`` integer intervals per family,
    so a lookup is one bisection. IPv4-mapped IPv6 addresses are looked up as IPv4.
    """

    __slots__ = ("_ends", "_starts", "ipv4", "ipv6")

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        nets = list(networks)
        self.ipv4: tuple[IPv4Network, ...] = tuple(
            ipaddress.collapse_addresses(n for n in nets if isinstance(n, IPv4Network))
        )
        self.ipv6: tuple[IPv6Network, ...] = tuple(
            ipaddress.collapse_addresses(n for n in nets if isinstance(n, IPv6Network))
        )
        both = {4: self.ipv4, 6: self.ipv6}
        self._starts = {v: [int(n.network_address) for n in nets] for v, nets in both.items()}
        self._ends = {v: [int(n.broadcast_address) for n in nets] for v, nets in both.items()}

    @classmethod
    def parse(cls, cidrs: Iterable[object], *, where: str = "", allow_special: bool = False) -> RangeSet:
        return cls(parse_network(c, where=where, allow_special=allow_special) for c in cidrs)

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, IPv4Address | IPv6Address):
            return False
        ip = fold_mapped(ip)
        starts, ends = self._starts[ip.version], self._ends[ip.version]
        i = bisect.bisect_right(starts, int(ip)) - 1
        return i >= 0 and ends[i] >= int(ip)

    def __len__(self) -> int:
        return len(self.ipv4) + len(self.ipv6)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __or__(self, other: RangeSet) -> RangeSet:
        return RangeSet([*self.ipv4, *self.ipv6, *other.ipv4, *other.ipv6])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and (self.ipv4, self.ipv6) == (other.ipv4, other.ipv6)

    def __hash__(self) -> int:
        return hash((self.ipv4, self.ipv6))

    def __repr__(self) -> str:
        return f"RangeSet({len(self.ipv4)} IPv4, {len(self.ipv6)} IPv6)"


# --- snapshots ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedRanges:
    """What a provider's parser extracts from its published document."""

    ipv4: list[str]
    ipv6: list[str]
    #: Publication version when the provider has one (CloudFront ``syncToken``), else None.
    serial: int | None = None
    #: Change digest when the provider has one (Cloudflare ``etag``).
    etag: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """A validated range list with where and when it came from. Stored as JSON."""

    provider: str
    source: str
    fetched_at: str
    #: Monotonic version: the publisher's (syncToken) or the fetch time in Unix seconds.
    serial: int
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    etag: str | None = None
    note: str = ""

    @property
    def ranges(self) -> RangeSet:
        return RangeSet.parse([*self.ipv4, *self.ipv6], where=f"{self.provider} snapshot")

    def to_json(self) -> bytes:
        doc = {"format": SNAPSHOT_FORMAT, **dataclasses.asdict(self)}
        doc["ipv4"], doc["ipv6"] = list(self.ipv4), list(self.ipv6)
        return (json.dumps(doc, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> Snapshot:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise RangeError(f"{where}: not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
            raise RangeError(f"{where}: not a {SNAPSHOT_FORMAT} snapshot")
        try:
            snap = cls(
                provider=_typed(doc, "provider", str), source=_typed(doc, "source", str),
                fetched_at=_typed(doc, "fetched_at", str), serial=_typed(doc, "serial", int),
                ipv4=tuple(_typed(doc, "ipv4", list)), ipv6=tuple(_typed(doc, "ipv6", list)),
                etag=doc.get("etag") if isinstance(doc.get("etag"), str) else None,
                note=doc.get("note", "") if isinstance(doc.get("note", ""), str) else "",
            )
        except KeyError as exc:
            raise RangeError(f"{where}: field {exc.args[0]} missing or of the wrong type") from None
        check_lists(snap.ipv4, snap.ipv6, where=where)
        return snap


def _typed(doc: dict[str, Any], key: str, tp: type) -> Any:
    value = doc.get(key)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise KeyError(key)
    return value


def check_lists(ipv4: Sequence[object], ipv6: Sequence[object], *, where: str) -> None:
    """Every entry a public CIDR of the right family, and not both lists empty."""
    if not ipv4 and not ipv6:
        raise RangeError(f"{where}: the range list is empty")
    for family, entries in ((4, ipv4), (6, ipv6)):
        for entry in entries:
            net = parse_network(entry, where=where)
            if net.version != family:
                raise RangeError(f"{where}: {entry} is listed as IPv{family} but is IPv{net.version}")


def check_successor(new: Snapshot, previous: Snapshot | None, *, serial_is_version: bool) -> None:
    """Refuse a list that shrinks a family to nothing, or (for versioned lists) goes back."""
    if previous is None:
        return
    for family, old, cur in ((4, previous.ipv4, new.ipv4), (6, previous.ipv6, new.ipv6)):
        if old and not cur:
            raise RangeError(f"{new.provider}: the new list has no IPv{family} ranges (the previous had {len(old)})")
    if serial_is_version and new.serial < previous.serial:
        raise RangeError(
            f"{new.provider}: the published version {new.serial} is older than the one in use "
            f"({previous.serial}); refusing to go back"
        )


def load_snapshot(path: Path) -> Snapshot:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RangeError(f"{path}: cannot read: {exc.strerror}") from None
    return Snapshot.from_json(data, where=str(path))


def load_best(shipped: Snapshot, path: Path | None) -> Snapshot:
    """The list a resolver starts with: the refreshed file if it exists, unless the package ships
    a newer one. A file that exists but is invalid is a startup error (someone changed it)."""
    if path is None or not path.exists():
        return shipped
    snap = load_snapshot(path)
    if snap.provider != shipped.provider:
        raise RangeError(f"{path}: holds {snap.provider!r} ranges, expected {shipped.provider!r}")
    return snap if snap.serial >= shipped.serial else shipped


# --- providers and refresh ---------------------------------------------------------------


@dataclass(frozen=True)
class CdnProvider:
    """One CDN, as the ``swqos cdn`` commands and :class:`EdgeResolver` see it."""

    name: str
    title: str
    #: Where the provider publishes its ranges.
    default_url: str
    #: Turns the published document into lists; raises RangeError (or any ValueError) if wrong.
    parse: Callable[[bytes], ParsedRanges]
    #: The snapshot shipped inside the plugin package.
    shipped: Callable[[], Snapshot]
    #: True when ``ParsedRanges.serial`` is a publication version that must never go back.
    serial_is_version: bool = False
    #: AWS-managed prefix lists for this CDN: ``((4, "com.amazonaws..."), (6, ...))``.
    aws_prefix_lists: tuple[tuple[int, str], ...] = ()
    #: Largest document accepted from ``default_url``.
    max_bytes: int = 1 << 20

    def default_ranges_file(self) -> Path:
        return DEFAULT_STATE_DIR / f"{self.name}.json"


def _is_loopback_host(host: str | None) -> bool:
    if host == "localhost":
        return True
    ip = parse_ip(host or "")
    return ip is not None and ip.is_loopback


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


def fetch(url: str, *, timeout: float = 10.0, max_bytes: int = 1 << 20, ca_file: Path | None = None) -> bytes:
    """GET ``url`` over HTTPS (plain HTTP only to a loopback host, for tests), no redirects,
    at most ``max_bytes``. Raises RangeError with a one-line reason."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and not _is_loopback_host(parts.hostname):
        raise RangeError(f"refusing plain-HTTP URL {url}: ranges must come over HTTPS")
    if parts.scheme not in ("http", "https"):
        raise RangeError(f"unsupported URL {url!r}")
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), _NoRedirect())
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, headers={"Accept": "application/json", "Cache-Control": "no-cache", "User-Agent": "swqos-cdn-refresh"}
    )
    try:
        with opener.open(req, timeout=timeout) as resp:
            if resp.status != 200:
                raise RangeError(f"{url}: HTTP {resp.status}")
            body = resp.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise RangeError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise RangeError(f"{url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed responses
        raise RangeError(f"{url}: {type(exc).__name__}: {exc}") from None
    if len(body) > max_bytes:
        raise RangeError(f"{url}: response larger than {max_bytes} bytes")
    return body


def snapshot_from_document(
    provider: CdnProvider, body: bytes, *, source: str, now: dt.datetime | None = None
) -> Snapshot:
    """Parse and validate a published document into a Snapshot (deduplicated, sorted)."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        parsed = provider.parse(body)
    except RangeError as exc:
        raise RangeError(f"{provider.name}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise RangeError(f"{provider.name}: unexpected document from {source} ({type(exc).__name__})") from None
    check_lists(parsed.ipv4, parsed.ipv6, where=f"{provider.name} list from {source}")
    ipv4 = sorted(set(parsed.ipv4), key=lambda c: ipaddress.ip_network(c))
    ipv6 = sorted(set(parsed.ipv6), key=lambda c: ipaddress.ip_network(c))
    serial = parsed.serial if parsed.serial is not None else int(now.timestamp())
    return Snapshot(
        provider=provider.name, source=source, fetched_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        serial=serial, ipv4=tuple(ipv4), ipv6=tuple(ipv6), etag=parsed.etag,
    )


def same_ranges(a: Snapshot, b: Snapshot) -> bool:
    return (set(a.ipv4), set(a.ipv6)) == (set(b.ipv4), set(b.ipv6))


def refresh(
    provider: CdnProvider,
    *,
    url: str | None = None,
    previous: Snapshot | None,
    path: Path | None,
    timeout: float = 10.0,
    ca_file: Path | None = None,
    fetcher: Callable[..., bytes] = fetch,
) -> tuple[str, Snapshot]:
    """Fetch, validate, and (if ``path``) store atomically. Returns ``("updated"|"unchanged", snap)``.

    Raises RangeError and leaves ``path`` untouched when anything is wrong: network error, HTML,
    an empty or shrunken-to-nothing list, an invalid or over-broad CIDR, a lower version.
    """
    url = url or provider.default_url
    body = fetcher(url, timeout=timeout, max_bytes=provider.max_bytes, ca_file=ca_file)
    new = snapshot_from_document(provider, body, source=url)
    check_successor(new, previous, serial_is_version=provider.serial_is_version)
    if previous is not None and same_ranges(new, previous) and (
        (provider.serial_is_version and new.serial == previous.serial) or (new.etag and new.etag == previous.etag)
    ):
        return "unchanged", previous
    if path is not None:
        try:
            write_atomic(path, new.to_json(), mode=0o644)
        except OSError as exc:
            raise RangeError(f"cannot write {path}: {exc.strerror}") from None
    return "updated", new


# --- the edge-gated resolver -------------------------------------------------------------


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

    # -- the rule
    def is_edge(self, ip: IPAddress | None) -> bool:
        return ip is not None and (ip in self.ranges or ip in self.extra)

    async def resolve(self, head: RequestHead) -> ClientAddress | None:
        peer = parse_peer(head.peer)
        if not self.is_edge(peer):
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
        if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local:
            raise invalid_argument(f"{self.provider.title} client address is not routable",
                                   label=f"{self.name}_bad_header")
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

    def parse_address(self, value: str, header: str) -> IPAddress:
        """Exactly one IP address, nothing else (no list, no port, no zone id)."""
        ip = parse_ip(value) if len(value) <= MAX_HEADER_VALUE and value == value.strip() else None
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
            s = self.settings
            try:
                status, snap = await asyncio.to_thread(
                    refresh, self.provider, url=s.refresh_url, previous=self.snapshot, path=s.ranges_file,
                    timeout=s.refresh_timeout, ca_file=s.refresh_ca_file,
                )
            except RangeError as exc:
                self.log.warning("%s range refresh refused, keeping the list from %s: %s",
                                 self.provider.title, self.snapshot.fetched_at, exc)
                return False
            except Exception as exc:  # a refresh bug must never touch the list in use
                self.log.error("%s range refresh failed, keeping the list from %s: %s: %s",
                               self.provider.title, self.snapshot.fetched_at, type(exc).__name__, exc)
                return False
            if status == "unchanged":
                self.log.info("%s ranges unchanged (%s)", self.provider.title, snap.etag or snap.serial)
                return False
            self.apply(snap)
            self.log.info("%s ranges updated: %d IPv4, %d IPv6 (%s)", self.provider.title,
                          len(snap.ipv4), len(snap.ipv6), snap.etag or snap.serial)
            return True

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

    def describe(self) -> dict[str, object]:
        return {"provider": self.provider.name, "fetched_at": self.snapshot.fetched_at,
                "serial": self.snapshot.serial, "etag": self.snapshot.etag,
                "ipv4": len(self.snapshot.ipv4), "ipv6": len(self.snapshot.ipv6),
                "require_cdn": self.settings.require_cdn}


# --- lockdown rendering ------------------------------------------------------------------

RENDER_FORMATS = ("aws-sg", "terraform", "nftables")


class RenderError(Exception):
    """The requested rules cannot be rendered as asked (the message says what to pass)."""


def _collapsed(snap: Snapshot) -> tuple[list[str], list[str]]:
    ranges = snap.ranges
    return [str(n) for n in ranges.ipv4], [str(n) for n in ranges.ipv6]


def _origin(provider: CdnProvider, snap: Snapshot) -> str:
    tag = snap.etag or str(snap.serial)
    return f"{provider.title} ranges fetched {snap.fetched_at} ({tag})"


def render_aws_sg(
    provider: CdnProvider,
    snap: Snapshot,
    *,
    port: int = 443,
    group_id: str | None = None,
    prefix_list_ids: dict[int, str] | None = None,
) -> str:
    """JSON for ``aws ec2 authorize-security-group-ingress --cli-input-json``.

    With ``prefix_list_ids`` (CloudFront's managed lists) the rule names the lists; otherwise it
    lists the CIDRs of the snapshot. ``GroupId`` is left out unless given, so
    ``--group-id sg-...`` on the command line supplies it.
    """
    desc = f"swqos {provider.title} edge"
    perm: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    if prefix_list_ids:
        perm["PrefixListIds"] = [{"PrefixListId": pl, "Description": f"{desc} IPv{fam}"}
                                 for fam, pl in sorted(prefix_list_ids.items())]
    else:
        v4, v6 = _collapsed(snap)
        if v4:
            perm["IpRanges"] = [{"CidrIp": c, "Description": desc} for c in v4]
        if v6:
            perm["Ipv6Ranges"] = [{"CidrIpv6": c, "Description": desc} for c in v6]
    doc: dict[str, Any] = {}
    if group_id:
        doc["GroupId"] = group_id
    doc["IpPermissions"] = [perm]
    return json.dumps(doc, indent=2) + "\n"


def _hcl_list(name: str, items: list[str]) -> list[str]:
    if not items:
        return [f"  {name} = []"]
    return [f"  {name} = [", *[f'    "{c}",' for c in items], "  ]"]


def _hcl_block(header: str, attrs: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in attrs)
    return [f"{header} {{", *[f"  {k.ljust(width)} = {v}" for k, v in attrs], "}", ""]


def render_terraform(provider: CdnProvider, snap: Snapshot, *, port: int = 443) -> str:
    """Terraform (AWS provider >= 5) ingress rules admitting ``port`` from the CDN only.

    CloudFront uses the AWS-managed prefix lists (looked up by name with a data source, so no
    ID is needed); other CDNs list the snapshot's CIDRs.
    """
    ident = provider.name.replace("-", "_")
    desc = f'"swqos {provider.title} edge"'
    out = [
        f"# swqos lockdown: TCP {port} from {provider.title} only.",
        f"# Rendered by `swqos cdn render --provider {provider.name} --format terraform --port {port}`",
        f"# from {_origin(provider, snap)}. Re-render after `swqos cdn refresh {provider.name}`.",
        "",
        *_hcl_block('variable "security_group_id"', [
            ("description", '"Security group of the swqos host-proxy"'), ("type", "string")]),
    ]
    common = [("security_group_id", "var.security_group_id"), ("description", desc),
              ("ip_protocol", '"tcp"'), ("from_port", str(port)), ("to_port", str(port))]
    if provider.aws_prefix_lists:
        for fam, pl_name in provider.aws_prefix_lists:
            data = f"{ident}_origin_facing_ipv{fam}"
            out += _hcl_block(f'data "aws_ec2_managed_prefix_list" "{data}"', [("name", f'"{pl_name}"')])
            out += _hcl_block(f'resource "aws_vpc_security_group_ingress_rule" "swqos_{ident}_ipv{fam}"',
                              [*common, ("prefix_list_id", f"data.aws_ec2_managed_prefix_list.{data}.id")])
    else:
        v4, v6 = _collapsed(snap)
        out += ["locals {", *_hcl_list(f"swqos_{ident}_ipv4", v4), *_hcl_list(f"swqos_{ident}_ipv6", v6), "}", ""]
        for fam in (4, 6):
            out += _hcl_block(f'resource "aws_vpc_security_group_ingress_rule" "swqos_{ident}_ipv{fam}"', [
                ("for_each", f"toset(local.swqos_{ident}_ipv{fam})"), *common, (f"cidr_ipv{fam}", "each.value")])
    return "\n".join(out).rstrip("\n") + "\n"


def render_nftables(provider: CdnProvider, snap: Snapshot, *, port: int = 443) -> str:
    """An nftables ruleset (``nft -f``): TCP ``port`` is accepted from the CDN's ranges and
    dropped from everywhere else. Loading it again replaces the previous version atomically."""
    table = f"swqos_cdn_{provider.name.replace('-', '_')}"
    v4, v6 = _collapsed(snap)
    lines = [
        f"# swqos lockdown: TCP {port} from {provider.title} only.",
        f"# Rendered by `swqos cdn render --provider {provider.name} --format nftables --port {port}`",
        f"# from {_origin(provider, snap)}.",
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
    ]
    for fam, items in ((4, v4), (6, v6)):
        lines += [f"\tset edge_ipv{fam} {{", f"\t\ttype ipv{fam}_addr", "\t\tflags interval"]
        if items:
            lines.append(f"\t\telements = {{ {', '.join(items)} }}")
        lines.append("\t}")
    lines += [
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f"\t\ttcp dport {port} ip saddr @edge_ipv4 accept",
        f"\t\ttcp dport {port} ip6 saddr @edge_ipv6 accept",
        f"\t\ttcp dport {port} counter drop",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


# --- the `swqos cdn` command group -------------------------------------------------------

_REGISTRY_ATTR = "swqos_cdn_providers"


def add_cdn_provider(subparsers: argparse._SubParsersAction, provider: CdnProvider) -> None:
    """Add ``provider`` to ``swqos cdn refresh|render|show``, creating the group on first use.

    Call it from a plugin's ``swqos_add_commands`` hook. Every CDN plugin, first- or
    third-party, calls it; the group is created once and shared.
    """
    cdn = subparsers.choices.get("cdn")
    if cdn is None:
        cdn = build_cdn_parser(subparsers.add_parser(
            "cdn", help="CDN edge ranges: refresh the allow-list, render lockdown rules",
            description="CDN edge ranges: refresh the allow-list, render lockdown rules."))
    registry = getattr(cdn, _REGISTRY_ATTR, None)
    if registry is None:
        raise RuntimeError("a 'cdn' command exists that swqos_core.cdn did not create")
    existing = registry.get(provider.name)
    if existing is not None and existing is not provider:
        raise RuntimeError(f"two plugins register the CDN provider {provider.name!r}")
    registry[provider.name] = provider


def build_cdn_parser(cdn: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Fill ``cdn`` with its sub-commands; providers are looked up when the command runs."""
    registry: dict[str, CdnProvider] = {}
    setattr(cdn, _REGISTRY_ATTR, registry)
    cdn.set_defaults(func=lambda args: (cdn.print_help(), 2)[1])
    sub = cdn.add_subparsers(dest="cdn_command", metavar="{refresh,render,show}")

    p = sub.add_parser("refresh", help="fetch the CDN's published ranges, validate, store atomically")
    p.add_argument("provider", help="CDN name (e.g. cloudflare, cloudfront)")
    p.add_argument("--url", help="fetch from here instead of the provider's published URL")
    p.add_argument("--output", type=Path, help="snapshot file to write (the resolver's ranges_file); "
                   f"default {DEFAULT_STATE_DIR}/<provider>.json")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--ca-file", type=Path, help="CA bundle for the URL (default: system store)")
    p.set_defaults(func=lambda args: _run_refresh(args, registry))

    r = sub.add_parser("render", help="print firewall rules admitting the port from the CDN only")
    r.add_argument("--provider", required=True)
    r.add_argument("--format", required=True, choices=RENDER_FORMATS)
    r.add_argument("--port", type=int, default=443)
    r.add_argument("--ranges-file", type=Path, help="refreshed snapshot to render from (default: the newer of "
                   "the shipped snapshot and the default ranges file)")
    r.add_argument("--group-id", help="aws-sg: security group id to put in the JSON")
    r.add_argument("--prefix-list-id", help="aws-sg: ID of the IPv4 managed prefix list (CloudFront)")
    r.add_argument("--ipv6-prefix-list-id", help="aws-sg: ID of the IPv6 managed prefix list (CloudFront)")
    r.add_argument("--explicit-ranges", action="store_true",
                   help="aws-sg: list the snapshot's CIDRs even where a managed prefix list exists")
    r.set_defaults(func=lambda args: _run_render(args, registry))

    s = sub.add_parser("show", help="print the range list a resolver would start with")
    s.add_argument("provider")
    s.add_argument("--ranges-file", type=Path)
    s.set_defaults(func=lambda args: _run_show(args, registry))
    return cdn


def _provider(registry: dict[str, CdnProvider], name: str) -> CdnProvider | None:
    provider = registry.get(name)
    if provider is None:
        have = ", ".join(sorted(registry)) or "none"
        print(f"swqos cdn: unknown provider {name!r} (installed CDN plugins provide: {have})", file=sys.stderr)
    return provider


def _current(provider: CdnProvider, path: Path | None) -> Snapshot:
    return load_best(provider.shipped(), path if path is not None else provider.default_ranges_file())


def _run_refresh(args: argparse.Namespace, registry: dict[str, CdnProvider]) -> int:
    provider = _provider(registry, args.provider)
    if provider is None:
        return 2
    path: Path = args.output or provider.default_ranges_file()
    try:
        previous = _current(provider, path)
        status, snap = refresh(provider, url=args.url, previous=previous, path=path,
                               timeout=args.timeout, ca_file=args.ca_file)
    except RangeError as exc:
        print(f"swqos cdn refresh {provider.name}: REFUSED, the previous list stays in use: {exc}", file=sys.stderr)
        return 1
    if status == "unchanged":
        print(f"{provider.title} ranges unchanged ({snap.etag or snap.serial}); {path} left as is")
        if not path.exists():  # first run, same list as shipped: still leave a file for the resolver
            write_atomic(path, snap.to_json(), mode=0o644)
    else:
        print(f"{provider.title} ranges updated: {len(snap.ipv4)} IPv4, {len(snap.ipv6)} IPv6 "
              f"({snap.etag or snap.serial}) -> {path}")
    return 0


def _run_render(args: argparse.Namespace, registry: dict[str, CdnProvider]) -> int:
    provider = _provider(registry, args.provider)
    if provider is None:
        return 2
    if not 1 <= args.port <= 65535:
        print("swqos cdn render: --port must be between 1 and 65535", file=sys.stderr)
        return 2
    try:
        snap = _current(provider, args.ranges_file)
        if args.format == "aws-sg":
            ids = {4: args.prefix_list_id, 6: args.ipv6_prefix_list_id}
            ids = {k: v for k, v in ids.items() if v}
            if provider.aws_prefix_lists and not args.explicit_ranges and not ids:
                raise RenderError(_prefix_list_hint(provider))
            for fam, pl in ids.items():
                if not (pl.startswith("pl-") and pl[3:].isalnum() and len(pl) <= 64):
                    raise RenderError(f"--{'ipv6-' if fam == 6 else ''}prefix-list-id {pl!r} is not a prefix-list id")
            text = render_aws_sg(provider, snap, port=args.port, group_id=args.group_id,
                                 prefix_list_ids=None if args.explicit_ranges else ids)
        elif args.format == "terraform":
            text = render_terraform(provider, snap, port=args.port)
        else:
            text = render_nftables(provider, snap, port=args.port)
    except (RangeError, RenderError) as exc:
        print(f"swqos cdn render: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _prefix_list_hint(provider: CdnProvider) -> str:
    lines = [f"{provider.title} is admitted through AWS-managed prefix lists, which are named by ID per "
             "account and region. Look them up and pass them:"]
    for fam, name in provider.aws_prefix_lists:
        flag = "--prefix-list-id" if fam == 4 else "--ipv6-prefix-list-id"
        lines.append(f"  {flag} $(aws ec2 describe-managed-prefix-lists --filters "
                     f"Name=prefix-list-name,Values={name} --query 'PrefixLists[0].PrefixListId' --output text)")
    lines.append("or use --format terraform (looks them up by name), or --explicit-ranges to list the CIDRs.")
    return "\n".join(lines)


def _run_show(args: argparse.Namespace, registry: dict[str, CdnProvider]) -> int:
    provider = _provider(registry, args.provider)
    if provider is None:
        return 2
    try:
        snap = _current(provider, args.ranges_file)
    except RangeError as exc:
        print(f"swqos cdn show: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"provider": snap.provider, "source": snap.source, "fetched_at": snap.fetched_at,
                      "serial": snap.serial, "etag": snap.etag, "ipv4": list(snap.ipv4), "ipv6": list(snap.ipv6)},
                     indent=1))
    return 0


def run_cdn_command(argv: Sequence[str], providers: Iterable[CdnProvider]) -> int:
    """Run ``swqos cdn <argv>`` with the given providers (tests; or a core CLI that prefers to
    collect providers itself instead of through ``swqos_add_commands``)."""
    parser = argparse.ArgumentParser(prog="swqos")
    subparsers = parser.add_subparsers(dest="command")
    for p in providers:
        add_cdn_provider(subparsers, p)
    args = parser.parse_args(["cdn", *argv])
    return int(args.func(args))


__all__ = [
    "CdnProvider", "EdgeResolver", "EdgeSettings", "ParsedRanges", "RangeError", "RangeSet", "RenderError",
    "Snapshot", "add_cdn_provider", "check_lists", "check_successor", "fetch", "load_best",
    "load_snapshot", "refresh", "render_aws_sg", "render_nftables", "render_terraform", "run_cdn_command",
    "snapshot_from_document",
]
