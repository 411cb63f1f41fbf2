"""Published CDN address ranges: strict parsing, fast membership, snapshots on disk."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import ipaddress
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from swqos_core.net import fold_mapped

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


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """Decode a published range document; refuse anything but a JSON object (an HTML error page,
    a captive portal, a truncated download)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RangeError(f"{what} is not JSON (an HTML error page?)") from None
    if not isinstance(doc, dict):
        raise RangeError(f"{what} is not a JSON object")
    return doc


def packaged_snapshot(package: str, resource: str) -> Callable[[], Snapshot]:
    """The loader of the snapshot a CDN plugin ships inside its package (read once, then cached)."""

    @functools.cache
    def shipped() -> Snapshot:
        data = resources.files(package).joinpath(resource).read_bytes()
        return Snapshot.from_json(data, where=f"{package}/{resource}")

    return shipped


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
