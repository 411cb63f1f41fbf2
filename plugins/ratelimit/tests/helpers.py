"""Shared test helpers: a fake monotonic clock and request builders."""

from __future__ import annotations

import ipaddress

from swqos_core.layers import ClientAddress, Principal, RequestHead
from swqos_core.net import parse_ip, parse_peer

MS = 1_000_000
S = 1_000_000_000


class FakeClock:
    """Monotonic integer nanoseconds that only move when a test says so."""

    def __init__(self, start: int = 10**15) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


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


def trader(sub: str) -> Principal:
    return Principal(subject=sub, role="trader", authenticator="jwt")
