"""Client addresses: parsing gRPC peer strings and the keys that limits and bans are counted under."""

from __future__ import annotations

import functools
import ipaddress
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address


def parse_ip(text: str) -> IPAddress | None:
    """Parse one textual IP address strictly; IPv4-mapped IPv6 is folded to IPv4. None if invalid."""
    text = text.strip()
    if not text or len(text) > 64 or "%" in text:  # zone ids are never a client address
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return fold_mapped(ip)


def fold_mapped(ip: IPAddress) -> IPAddress:
    """``::ffff:a.b.c.d`` is the IPv4 client a.b.c.d, and must share its limits."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


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
        if rest.startswith("["):
            host, sep, _ = rest[1:].partition("]")
            return parse_ip(host) if sep else None
        return parse_ip(rest)
    return None


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
