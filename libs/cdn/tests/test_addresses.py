"""swqos_cdn.addresses: what a CDN may name as a client."""

import ipaddress

import pytest

from swqos_cdn import NEVER_A_CLIENT, non_global_kind

ip = ipaddress.ip_address


@pytest.mark.parametrize(("text", "kind"), [
    ("255.255.255.255", "broadcast"),  # Python calls it private and reserved
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("0.1.2.3", "this_network"),
    ("127.0.0.1", "loopback"), ("::1", "loopback"),
    ("224.0.0.1", "multicast"), ("233.252.0.1", "multicast"), ("ff0e::1", "multicast"),  # is_global calls these global
    ("169.254.0.1", "link_local"), ("fe80::1", "link_local"),
    ("10.1.2.3", "private"), ("172.31.0.1", "private"), ("192.168.0.1", "private"), ("fd00::1", "private"),
    ("fec0::1", "private"),
    ("100.64.0.1", "shared"),
    ("192.0.2.1", "documentation"), ("198.51.100.1", "documentation"), ("203.0.113.1", "documentation"),
    ("2001:db8::1", "documentation"), ("3fff::1", "documentation"),
    ("198.18.0.1", "benchmarking"), ("2001:2::1", "benchmarking"),
    ("240.0.0.1", "reserved"), ("192.0.0.1", "reserved"), ("192.88.99.1", "reserved"), ("2001::1", "reserved"),
    ("64:ff9b:1::1", "reserved"), ("100::1", "reserved"),
    # IPv6 spellings are judged as their IPv4 address
    ("::ffff:10.0.0.1", "private"), ("::10.0.0.1", "private"), ("2002:a00:1::", "private"),
    ("64:ff9b::7f00:1", "loopback"), ("2002:ffff:ffff::", "broadcast"),
])
def test_kinds(text, kind):
    assert non_global_kind(ip(text)) == kind


@pytest.mark.parametrize("text", ["81.2.69.7", "1.1.1.1", "2a01:4f8::1", "2606:4700::1", "192.0.0.9",
                                  "2002:5102:4507::", "64:ff9b::5102:4507"])
def test_global_unicast(text):
    assert non_global_kind(ip(text)) is None


def test_never_a_client_kinds():
    assert {"unspecified", "broadcast", "multicast", "this_network"} == set(NEVER_A_CLIENT)
