"""Shared test helpers: request builders (and the kit's FakeClock, re-exported)."""

from __future__ import annotations

import ipaddress

from swqos_core.layers import ClientAddress, Principal, RequestHead
from swqos_core.net import parse_ip, parse_peer
from swqos_testing.clock import FakeClock

__all__ = ["FakeClock"]

MS = 1_000_000
S = 1_000_000_000


SIGN = RequestHead(rpc="SignCertificateVerify", peer="ipv4:127.0.0.1:5000", metadata=())
IDENTITY = RequestHead(rpc="GetIdentity", peer="ipv4:127.0.0.1:5000", metadata=())


def client(ip: str) -> ClientAddress:
    parsed = parse_ip(ip)
    assert parsed is not None
    return ClientAddress(parsed, "peer", f"ipv4:{ip}:1" if parsed.version == 4 else f"ipv6:[{ip}]:1")


def peer_client(peer: str) -> ClientAddress:
    return ClientAddress(parse_peer(peer), "peer", peer)


def v6_net(i: int) -> ClientAddress:
    """A client in the i-th distinct IPv6 /64 of 2001:db8::/32 (host part varies too)."""
    ip = ipaddress.IPv6Address((0x20010DB8 << 96) | (i << 64) | (i * 7919 + 1))
    return ClientAddress(ip, "peer", "")


def v6_48(i: int) -> ClientAddress:
    """A client in the i-th distinct IPv6 /48 of 2001::/16: its /64, /56 and /48 are all fresh."""
    ip = ipaddress.IPv6Address((0x2001 << 112) | (i << 80) | (i * 7919 + 1))
    return ClientAddress(ip, "peer", "")


def trader(sub: str) -> Principal:
    return Principal(subject=sub, role="trader", authenticator="jwt")
