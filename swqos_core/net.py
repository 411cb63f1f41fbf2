"""Client addresses: parsing gRPC peer strings and the keys that limits and bans are counted under."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Literal
from urllib.parse import unquote

IPAddress = IPv4Address | IPv6Address


def parse_ip(text: str, *, fold: bool = True) -> IPAddress | None:
    """Parse one textual IP address strictly. None if invalid.

    With ``fold`` (the default) an IPv6 address that stands for an IPv4 one is returned as that
    IPv4 address (see :func:`fold_mapped`); ``fold=False`` returns the address as written.
    """
    text = text.strip()
    if not text or len(text) > 64 or "%" in text:  # zone ids are never a client address
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return fold_mapped(ip) if fold else ip


EmbeddingKind = Literal["mapped", "compatible", "6to4", "nat64"]

_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix


def embedded_ipv4(ip: IPAddress) -> tuple[EmbeddingKind, IPv4Address] | None:
    """The IPv4 address an IPv6 address is a spelling of, and how it is spelled; None otherwise.

    ``::ffff:a.b.c.d`` (mapped), ``::a.b.c.d`` (IPv4-compatible, deprecated; ``::`` and ``::1``
    and the rest of ``::/104`` excepted, they are not IPv4 spellings), ``2002:AABB:CCDD::/48``
    (6to4) and ``64:ff9b::a.b.c.d`` (NAT64 well-known prefix).
    """
    if not isinstance(ip, IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return "mapped", ip.ipv4_mapped
    value = int(ip)
    if value >> 32 == 0 and value >= 1 << 24:
        return "compatible", IPv4Address(value)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip in _NAT64_WKP:
        return "nat64", IPv4Address(value & 0xFFFFFFFF)
    return None


def fold_mapped(ip: IPAddress) -> IPAddress:
    """An IPv6 spelling of an IPv4 client is that IPv4 client, and must share its limits and bans.

    Folds IPv4-mapped, IPv4-compatible, 6to4 and NAT64 (64:ff9b::/96) addresses (see
    :func:`embedded_ipv4`); otherwise a client would get a fresh IPv6 bucket per spelling, and a
    private IPv4 address could pass as a global IPv6 one.
    """
    embedded = embedded_ipv4(ip)
    return embedded[1] if embedded is not None else ip


# Peer strings repeat for every call on a connection (CDN edges keep theirs open for minutes):
# caching the parse saves microseconds per request; the bound keeps a connection flood harmless.
@functools.lru_cache(maxsize=4096)
def parse_peer(peer: str) -> IPAddress | None:
    """Parse grpc's transport peer (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``, ``unix:/x``). None if not IP."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        host, _, _port = rest.rpartition(":")
        return parse_ip(host)
    if kind == "ipv6":
        rest = unquote(rest)  # grpcio >= 1.6x writes ipv6:%5B::1%5D:port
        if rest.startswith("["):
            host, sep, _ = rest[1:].partition("]")
            return parse_ip(host) if sep else None
        return parse_ip(rest)
    return None


# str() of an address object re-formats it every time (an IPv6 one costs microseconds); the audit
# line and the logs want it once per request, from a few thousand addresses at a time.
@functools.lru_cache(maxsize=4096)
def ip_text(ip: IPAddress) -> str:
    """``str(ip)``, cached."""
    return str(ip)


def address_key(ip: IPAddress | None, peer: str = "") -> int | str:
    """The bucket an address is counted in: an IPv4 /32, an IPv6 /64 (as an int), or a safe string.

    IPv6 clients get a whole /64 from any ISP, so counting per /128 would let one client
    rotate through 2**64 identities. Addresses without an IP (unix sockets) share one bucket
    per transport kind, so they are limited too and never crash the limiter.
    """
    if ip is None:
        kind = peer.partition(":")[0]
        return f"non-ip:{kind[:16]}" if kind.isalnum() else "non-ip:other"
    if isinstance(ip, IPv4Address):
        return int(ip)
    return (int(ip) >> 64) | (1 << 128)  # tag bit keeps IPv6 keys apart from IPv4 ints


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where a listener binds or a client connects: ``tcp`` host and port, a ``unix`` path, or ``vsock``."""

    kind: Literal["tcp", "unix", "vsock"]
    host: str = ""
    port: int = 0
    path: str = ""
    cid: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix://{self.path}"
        if self.kind == "vsock":
            return f"vsock://{self.cid}:{self.port}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """A TCP address only this host can reach (a Unix socket or vsock is not TCP: False)."""
        if self.kind != "tcp":
            return False
        if self.host == "localhost":
            return True
        ip = parse_ip(self.host, fold=False)  # only ::1 and 127/8 themselves: a 6to4 spelling is not loopback
        return ip is not None and ip.is_loopback


def parse_listen(text: str, *, where: str, kinds: tuple[str, ...] = ("tcp",)) -> ListenAddress:
    """The one parser of listen and connect addresses: ``HOST:PORT``, ``[V6]:PORT``, ``unix:///path``,
    ``vsock://CID:PORT``; ``kinds`` says which this setting accepts. Raises ValueError naming ``where``."""
    def fail(expected: str) -> ValueError:
        allowed = " or ".join({"tcp": "HOST:PORT", "unix": "unix:///path", "vsock": "vsock://CID:PORT"}[k] for k in kinds)
        return ValueError(f"{where}: {expected}; expected {allowed}, got {text!r}")

    if text.startswith("unix://"):
        if "unix" not in kinds:
            raise fail("a unix socket is not allowed here")
        path = text[len("unix://"):]
        if not path.startswith("/") or "\0" in path:
            raise fail("a unix address needs an absolute path")
        return ListenAddress("unix", path=path)
    if text.startswith("vsock://"):
        if "vsock" not in kinds:
            raise fail("a vsock address is not allowed here")
        cid, sep, port = text[len("vsock://"):].partition(":")
        # CID -1 is VMADDR_CID_ANY: an enclave listens on any CID.
        if not (sep and (cid.isdigit() or cid == "-1") and port.isdigit()) or int(port) > 0xFFFFFFFF:
            raise fail("CID and PORT must be integers")
        return ListenAddress("vsock", cid=int(cid), port=int(port))
    if "tcp" not in kinds:
        raise fail("a TCP address is not allowed here")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise fail("no valid port")
    if host.startswith("["):
        if not host.endswith("]"):
            raise fail("unbalanced brackets")
        host = host[1:-1]
    if host not in ("localhost", "") and parse_ip(host) is None:
        raise fail("the host must be an IP address or localhost")
    return ListenAddress("tcp", host=host or "0.0.0.0", port=int(port))  # noqa: S104 (an empty host means all)
