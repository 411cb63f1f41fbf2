"""CloudFront: ip-ranges.json parsing, syncToken ordering, `swqos cdn refresh|render cloudfront`."""

import ipaddress

import pytest

from swqos_cdn import RangeError, load_snapshot, render_aws_sg, render_nftables, render_terraform, run_cdn_command
from swqos_cdn_cloudfront.ranges import PREFIX_LISTS, PROVIDER, parse_ip_ranges, shipped
from swqos_testing.conformance import RangeDocumentServer
from swqos_testing.conformance.lockdown import aws_cli_accepts, check_aws_sg, check_terraform, have, nft_check

from .cloudfront_helpers import ip_ranges

V4 = ["130.176.0.0/18", "15.158.0.0/16"]
V6 = ["2600:9000:1400::/39"]


def test_parse_keeps_only_origin_facing_and_dedupes():
    body = ip_ranges([*V4, V4[0]], V6, 1790000000)
    parsed = parse_ip_ranges(body)
    assert parsed.serial == 1790000000
    assert "13.32.0.0/15" not in parsed.ipv4  # viewer-facing CLOUDFRONT
    assert "3.5.140.0/22" not in parsed.ipv4  # AMAZON
    from swqos_cdn import snapshot_from_document
    snap = snapshot_from_document(PROVIDER, body, source="test")
    assert sorted(snap.ipv4) == sorted(set(V4)) and list(snap.ipv6) == V6


@pytest.mark.parametrize("body", [
    b'{"prefixes": [], "ipv6_prefixes": []}',  # no syncToken
    b'{"syncToken": 1790000000, "prefixes": [], "ipv6_prefixes": []}',  # not a string
    b'{"syncToken": "-5", "prefixes": [], "ipv6_prefixes": []}',
    b'{"syncToken": "1790000000", "prefixes": {}, "ipv6_prefixes": []}',
    b'{"syncToken": "1790000000", "prefixes": ["x"], "ipv6_prefixes": []}',
    b"<html>", b"[]",
])
def test_parse_rejects_malformed(body):
    with pytest.raises(RangeError):
        parse_ip_ranges(body)


def test_shipped_snapshot():
    snap = shipped()
    assert snap.provider == "cloudfront" and snap.ipv4 and snap.ipv6
    assert ipaddress.ip_address("130.176.10.1") in snap.ranges
    assert ipaddress.ip_address("13.32.0.1") not in snap.ranges  # viewer-facing, not origin-facing


def refresh(capsys, url, out):
    rc = run_cdn_command(["refresh", "cloudfront", "--url", url, "--out", str(out)], [PROVIDER])
    return rc, capsys.readouterr()


def test_refresh_refuses_a_lower_sync_token(tmp_path, capsys):
    out = tmp_path / "cloudfront.json"
    with RangeDocumentServer() as srv:
        srv.body = ip_ranges(V4, V6, 1790000000)
        assert refresh(capsys, srv.url, out)[0] == 0
        good = out.read_bytes()
        srv.body = ip_ranges([*V4, "18.68.0.0/16"], V6, 1789999999)
        rc, cap = refresh(capsys, srv.url, out)
        assert rc == 1 and "older" in cap.err and out.read_bytes() == good
        srv.body = ip_ranges(V4, V6, 1790000000)  # same token: unchanged
        rc, cap = refresh(capsys, srv.url, out)
        assert rc == 0 and "unchanged" in cap.out and out.read_bytes() == good
        srv.body = ip_ranges([*V4, "18.68.0.0/16"], V6, 1790000500)
        rc, cap = refresh(capsys, srv.url, out)
    assert rc == 0 and "18.68.0.0/16" in load_snapshot(out).ipv4 and load_snapshot(out).serial == 1790000500


@pytest.mark.parametrize("case", ["no origin-facing", "v6 dropped", "world"])
def test_refresh_refuses_bad_lists(tmp_path, capsys, case):
    out = tmp_path / "cloudfront.json"
    body = {"no origin-facing": ip_ranges([], [], 1790000001),
            "v6 dropped": ip_ranges(V4, [], 1790000001),
            "world": ip_ranges([*V4, "0.0.0.0/0"], V6, 1790000001)}[case]
    with RangeDocumentServer() as srv:
        srv.body = ip_ranges(V4, V6, 1790000000)
        assert refresh(capsys, srv.url, out)[0] == 0
        good = out.read_bytes()
        srv.body = body
        rc, cap = refresh(capsys, srv.url, out)
    assert rc == 1 and "REFUSED" in cap.err and out.read_bytes() == good


# --- rendering -------------------------------------------------------------------------------

def render(capsys, *argv):
    rc = run_cdn_command(["render", "--provider", "cloudfront", *argv], [PROVIDER])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_aws_sg_needs_prefix_list_ids_and_says_how_to_find_them(capsys):
    rc, out, err = render(capsys, "--format", "aws-sg")
    assert rc == 2 and out == ""
    for _, name in PREFIX_LISTS:
        assert name in err
    assert "describe-managed-prefix-lists" in err


def test_aws_sg_with_prefix_lists(capsys, tmp_path):
    rc, out, _ = render(capsys, "--format", "aws-sg", "--prefix-list-id", "pl-3b927c52",
                        "--ipv6-prefix-list-id", "pl-0a1b2c3d4e5f60718")
    assert rc == 0
    doc = check_aws_sg(out)
    perm = doc["IpPermissions"][0]
    assert [p["PrefixListId"] for p in perm["PrefixListIds"]] == ["pl-3b927c52", "pl-0a1b2c3d4e5f60718"]
    assert "IpRanges" not in perm
    if have("aws"):
        (tmp_path / "sg.json").write_text(out)
        sent = aws_cli_accepts(tmp_path / "sg.json")
        assert sent["IpPermissions.1.PrefixListIds.1.PrefixListId"] == ["pl-3b927c52"]


@pytest.mark.parametrize("bad", ["sg-123", "pl-", "pl-12;rm", "x" * 80])
def test_aws_sg_bad_prefix_list_id(capsys, bad):
    rc, out, err = render(capsys, "--format", "aws-sg", "--prefix-list-id", bad)
    assert rc == 2 and out == "" and "prefix-list id" in err


def test_aws_sg_explicit_ranges(capsys):
    rc, out, _ = render(capsys, "--format", "aws-sg", "--explicit-ranges", "--port", "8443")
    assert rc == 0
    doc = check_aws_sg(out)
    perm = doc["IpPermissions"][0]
    covered = [ipaddress.ip_network(r["CidrIp"]) for r in perm["IpRanges"]]
    for cidr in shipped().ipv4:
        assert any(ipaddress.ip_network(cidr).subnet_of(c) for c in covered)


def test_terraform_uses_the_managed_prefix_lists(tmp_path):
    text = render_terraform(PROVIDER, shipped(), port=443)
    check_terraform(text, tmp_path)
    for _, name in PREFIX_LISTS:
        assert f'name = "{name}"' in text
    assert text.count('resource "aws_vpc_security_group_ingress_rule"') == 2
    assert "prefix_list_id    = data.aws_ec2_managed_prefix_list.cloudfront_origin_facing_ipv6.id" in text
    assert "cidr_ipv4" not in text


@pytest.mark.skipif(not have("nft"), reason="nft not on PATH (apt-get install nftables)")
def test_nft_accepts_the_ruleset(tmp_path):
    text = render_nftables(PROVIDER, shipped(), port=443)
    nft_check(text, tmp_path)
    assert "130.176.0.0/" in text and "2600:9000:" in text


def test_aws_sg_function_default_lists_cidrs():
    doc = check_aws_sg(render_aws_sg(PROVIDER, shipped()))
    assert doc["IpPermissions"][0]["Ipv6Ranges"]
