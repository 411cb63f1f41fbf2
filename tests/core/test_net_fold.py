"""swqos_core.net: IPv6 spellings of an IPv4 address count as that address (issue 13 item 7)."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swqos_core.net import address_key, embedded_ipv4, fold_mapped, parse_ip

ip = ipaddress.ip_address


@pytest.mark.parametrize(("text", "kind", "v4"), [
    ("::ffff:81.2.69.7", "mapped", "81.2.69.7"),
    ("::81.2.69.7", "compatible", "81.2.69.7"),
    ("::1.0.0.0", "compatible", "1.0.0.0"),
    ("2002:5102:4507::1", "6to4", "81.2.69.7"),
    ("2002:a00:1:ffff::9", "6to4", "10.0.0.1"),
    ("64:ff9b::81.2.69.7", "nat64", "81.2.69.7"),
    ("64:ff9b::a00:1", "nat64", "10.0.0.1"),
])
def test_embedded_spellings_fold(text, kind, v4):
    assert embedded_ipv4(ip(text)) == (kind, ip(v4))
    assert parse_ip(text) == ip(v4)
    assert parse_ip(text, fold=False) == ip(text)
    assert address_key(parse_ip(text)) == address_key(ip(v4))  # one bucket, not a fresh /64


@pytest.mark.parametrize("text", [
    "::", "::1",  # unspecified and loopback are not IPv4-compatible spellings
    "::0.255.255.255",  # ::/104 is not an IPv4 spelling either
    "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215) is not the well-known prefix
    "2001:db8::1", "2606:4700::1", "fe80::1", "::ffff:0:0:1",
])
def test_other_ipv6_addresses_stay_ipv6(text):
    assert embedded_ipv4(ip(text)) is None
    assert parse_ip(text) == ip(text)


def test_ipv4_is_untouched():
    assert fold_mapped(ip("81.2.69.7")) == ip("81.2.69.7")
    assert embedded_ipv4(ip("81.2.69.7")) is None


@given(st.integers(1 << 24, (1 << 32) - 1))
def test_every_spelling_of_one_ipv4_address_folds_to_it(n):
    v4 = ipaddress.IPv4Address(n)
    spellings = [
        ipaddress.IPv6Address((0xFFFF << 32) | n),
        ipaddress.IPv6Address(n),
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 0x1234),
        ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | n),
    ]
    assert {fold_mapped(s) for s in spellings} == {v4}


@pytest.mark.parametrize(("peer", "expected"), [
    ("ipv6:%5B2a01:4f8::1%5D:57410", "2a01:4f8::1"),  # what grpcio 1.85 writes
    ("ipv6:[2a01:4f8::1]:57410", "2a01:4f8::1"),
    ("ipv6:%5B::ffff:81.2.69.7%5D:1", "81.2.69.7"),
    ("ipv6:%5B2002:5102:4507::1%5D:1", "81.2.69.7"),
])
def test_grpc_ipv6_peers_parse(peer, expected):
    from swqos_core.net import parse_peer

    assert parse_peer(peer) == ip(expected)


@pytest.mark.parametrize("peer", ["ipv6:%5Bfe80::1%25eth0%5D:1", "ipv6:%5B::1", "ipv6:%5Bnot-an-ip%5D:1"])
def test_bad_grpc_ipv6_peers_are_not_addresses(peer):
    from swqos_core.net import parse_peer

    assert parse_peer(peer) is None
