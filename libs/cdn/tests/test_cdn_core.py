"""swqos_cdn: RangeSet membership, snapshots, atomic writes."""

import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swqos_cdn import (
    RangeError,
    RangeSet,
    Snapshot,
    check_successor,
    load_best,
)
from swqos_core.files import write_atomic

NETS = ["173.245.48.0/20", "104.16.0.0/13", "104.24.0.0/14", "2606:4700::/32", "2a06:98c0::/29"]


def test_membership_edges():
    rs = RangeSet.parse(NETS)
    ip = ipaddress.ip_address
    assert ip("173.245.48.0") in rs and ip("173.245.63.255") in rs
    assert ip("173.245.64.0") not in rs and ip("173.245.47.255") not in rs
    assert ip("104.27.255.255") in rs and ip("104.28.0.0") not in rs  # 104.28/14 is WARP, not an edge
    assert ip("::ffff:104.16.0.1") in rs  # mapped folds to IPv4
    assert ip("2606:4700:ffff::1") in rs and ip("2606:4701::") not in rs
    assert "173.245.48.1" not in rs and None not in rs  # only address objects are members
    assert len(RangeSet.parse(["104.16.0.0/13", "104.24.0.0/14", "104.16.0.0/12"])) == 1  # collapsed


@given(st.integers(0, 2**32 - 1))
def test_membership_matches_ipaddress(n):
    rs = RangeSet.parse(NETS)
    addr = ipaddress.IPv4Address(n)
    assert (addr in rs) == any(addr in ipaddress.ip_network(c) for c in NETS if ":" not in c)


@pytest.mark.parametrize("bad", ["0.0.0.0/0", "::/0", "4.0.0.0/6", "10.0.0.0/8", "1.2.3.4/33", "1.2.3.4/24",
                                 "fe80::/10", "2001:db8::/32", "", " 1.2.3.0/24", 5, None, "1.2.3.0/24%eth0"])
def test_parse_network_refuses(bad):
    with pytest.raises(RangeError):
        RangeSet.parse([bad])


def test_allow_special_for_operator_ranges():
    assert ipaddress.ip_address("127.0.0.1") in RangeSet.parse(["127.0.0.0/8"], allow_special=True)
    with pytest.raises(RangeError):
        RangeSet.parse(["0.0.0.0/0"], allow_special=True)  # over-broad is never allowed


def snap(serial=10, v4=("173.245.48.0/20",), v6=("2606:4700::/32",), provider="x"):
    return Snapshot(provider, "test", "2026-01-01T00:00:00Z", serial, tuple(v4), tuple(v6))


def test_successor_rules():
    check_successor(snap(11), snap(10), serial_is_version=True)
    with pytest.raises(RangeError):
        check_successor(snap(9), snap(10), serial_is_version=True)
    check_successor(snap(9), snap(10), serial_is_version=False)
    with pytest.raises(RangeError):
        check_successor(snap(11, v6=()), snap(10), serial_is_version=False)


def test_load_best_prefers_newer(tmp_path):
    shipped = snap(10)
    assert load_best(shipped, None) is shipped
    assert load_best(shipped, tmp_path / "absent.json") is shipped
    write_atomic(tmp_path / "r.json", snap(20, v4=("104.16.0.0/13",)).to_json())
    assert load_best(shipped, tmp_path / "r.json").serial == 20
    write_atomic(tmp_path / "old.json", snap(5).to_json())
    assert load_best(shipped, tmp_path / "old.json") is shipped
    write_atomic(tmp_path / "other.json", snap(30, provider="y").to_json())
    with pytest.raises(RangeError):
        load_best(shipped, tmp_path / "other.json")
    doc = json.loads(snap(30).to_json())
    doc["ipv4"] = ["0.0.0.0/0"]
    (tmp_path / "evil.json").write_text(json.dumps(doc))
    with pytest.raises(RangeError):
        load_best(shipped, tmp_path / "evil.json")


def test_atomic_write_failure_leaves_old_file(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    write_atomic(target, b"old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
