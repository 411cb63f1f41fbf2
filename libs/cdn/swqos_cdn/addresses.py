"""Which client addresses a CDN can truthfully name: globally routable unicast ones.

A CDN edge connects from the internet, so the client it names is a global address. Anything else
in a client-address header (10.0.0.1, 127.0.0.1, 192.0.2.1, 255.255.255.255, ``::a.b.c.d`` ...) is
a misconfigured edge, a Transform Rule gone wrong or a forgery, and would put every such caller in
one rate-limit bucket. Addresses are folded first (:func:`swqos_core.net.fold_mapped`), so
``2002:0a00:0001::`` (6to4) and ``64:ff9b::10.0.0.1`` (NAT64) are judged as 10.0.0.1.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Literal

from swqos_core.net import IPAddress, fold_mapped

AddressKind = Literal[
    "unspecified", "this_network", "broadcast", "multicast", "loopback", "link_local", "private",
    "shared", "documentation", "benchmarking", "reserved",
]

#: Kinds that never name one host: refused even where non-global clients are allowed (staging).
NEVER_A_CLIENT: frozenset[str] = frozenset({"unspecified", "this_network", "broadcast", "multicast"})

_LIMITED_BROADCAST = IPv4Address("255.255.255.255")

# Checked in order, first match wins; these name the usual suspects. Whatever else Python's
# ``is_global`` refuses (IETF protocol assignments, Teredo, ORCHID, ...) is "reserved".
_V4: tuple[tuple[IPv4Network, AddressKind], ...] = tuple((IPv4Network(n), k) for n, k in (
    ("0.0.0.0/8", "this_network"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link_local"),
    ("224.0.0.0/4", "multicast"),
    ("10.0.0.0/8", "private"), ("172.16.0.0/12", "private"), ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "shared"),
    ("192.0.2.0/24", "documentation"), ("198.51.100.0/24", "documentation"), ("203.0.113.0/24", "documentation"),
    ("198.18.0.0/15", "benchmarking"),
    ("192.88.99.0/24", "reserved"),  # the 6to4 relay anycast prefix, deprecated (RFC 7526)
    ("240.0.0.0/4", "reserved"),
))
_V6: tuple[tuple[IPv6Network, AddressKind], ...] = tuple((IPv6Network(n), k) for n, k in (
    ("::1/128", "loopback"),
    ("ff00::/8", "multicast"),
    ("fe80::/10", "link_local"),
    ("fec0::/10", "private"),  # site-local, deprecated
    ("fc00::/7", "private"),  # unique local
    ("2001:db8::/32", "documentation"), ("3fff::/20", "documentation"),  # RFC 3849, RFC 9637
    ("2001:2::/48", "benchmarking"),
    ("64:ff9b:1::/48", "reserved"),  # local-use NAT64 (RFC 8215): never seen from the internet
    ("100::/64", "reserved"),  # discard-only
))


def non_global_kind(ip: IPAddress) -> AddressKind | None:
    """None for a globally routable unicast address; otherwise what it is (``"private"``, ...).

    ``255.255.255.255`` is ``"broadcast"`` (Python files it under private and reserved).
    """
    ip = fold_mapped(ip)
    if ip.is_unspecified:
        return "unspecified"
    if ip == _LIMITED_BROADCAST:
        return "broadcast"
    table = _V4 if isinstance(ip, IPv4Address) else _V6
    for net, kind in table:
        if ip in net:  # type: ignore[operator]  # the table matches the address family
            return kind
    if not ip.is_global:
        return "reserved"
    return None


def is_global_unicast(ip: IPAddress) -> bool:
    return non_global_kind(ip) is None


__all__ = ["NEVER_A_CLIENT", "AddressKind", "is_global_unicast", "non_global_kind"]
