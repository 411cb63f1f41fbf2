"""`swqos cdn render --provider cloudflare`: checked by the real tools where installed, by schema always."""

import ipaddress
import json

import pytest

from swqos_cdn import render_aws_sg, render_nftables, render_terraform, run_cdn_command
from swqos_cdn_cloudflare.ranges import PROVIDER, shipped
from swqos_testing.conformance.lockdown import aws_cli_accepts, check_aws_sg, check_terraform, have, nft_check


def render(capsys, *argv):
    rc = run_cdn_command(["render", "--provider", "cloudflare", *argv], [PROVIDER])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_aws_sg_lists_every_range(capsys):
    rc, out, _ = render(capsys, "--format", "aws-sg", "--group-id", "sg-0123456789abcdef0")
    assert rc == 0
    doc = check_aws_sg(out)
    perm = doc["IpPermissions"][0]
    assert (perm["FromPort"], perm["ToPort"], perm["IpProtocol"]) == (443, 443, "tcp")
    assert {r["CidrIp"] for r in perm["IpRanges"]} == set(shipped().ipv4)
    assert {r["CidrIpv6"] for r in perm["Ipv6Ranges"]} == set(shipped().ipv6)
    assert doc["GroupId"] == "sg-0123456789abcdef0"


def test_aws_sg_port_option(capsys):
    rc, out, _ = render(capsys, "--format", "aws-sg", "--port", "8443")
    assert rc == 0
    doc = check_aws_sg(out)
    assert "GroupId" not in doc  # supplied with --group-id on the aws command line
    assert doc["IpPermissions"][0]["FromPort"] == 8443


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_bad_port_refused(capsys, port):
    rc, out, err = render(capsys, "--format", "nftables", "--port", port)
    assert rc == 2 and out == "" and "--port" in err


def test_schema_rejects_a_broken_document():
    broken = render_aws_sg(PROVIDER, shipped()).replace('"FromPort": 443', '"FromPort": "443"')
    with pytest.raises(AssertionError):
        check_aws_sg(broken)
    bad_cidr = render_aws_sg(PROVIDER, shipped()).replace("173.245.48.0/20", "173.245.48.1/20")
    with pytest.raises(AssertionError):
        check_aws_sg(bad_cidr)


@pytest.mark.skipif(not have("aws"), reason="aws CLI not installed; JSON still checked against botocore's model")
def test_aws_cli_accepts_the_json(tmp_path):
    f = tmp_path / "sg.json"
    f.write_text(render_aws_sg(PROVIDER, shipped()))
    sent = aws_cli_accepts(f)
    cidrs = {v[0] for k, v in sent.items() if k.endswith(".CidrIp")}
    cidrs6 = {v[0] for k, v in sent.items() if k.endswith(".CidrIpv6")}
    assert cidrs == set(shipped().ipv4) and cidrs6 == set(shipped().ipv6)
    assert sent["IpPermissions.1.FromPort"] == ["443"]


def test_nftables_ruleset_structure():
    text = render_nftables(PROVIDER, shipped(), port=443)
    assert "tcp dport 443 ip saddr @edge_ipv4 accept" in text
    assert "tcp dport 443 ip6 saddr @edge_ipv6 accept" in text
    assert text.index("accept") < text.index("drop")
    for cidr in [*shipped().ipv4, *shipped().ipv6]:
        assert cidr in text


@pytest.mark.skipif(not have("nft"), reason="nft not on PATH (apt-get install nftables)")
@pytest.mark.parametrize("port", [443, 8443])
def test_nft_accepts_the_ruleset(tmp_path, port):
    nft_check(render_nftables(PROVIDER, shipped(), port=port), tmp_path)


@pytest.mark.skipif(not have("nft"), reason="nft not on PATH (apt-get install nftables)")
def test_nft_check_is_not_vacuous(tmp_path):
    with pytest.raises(AssertionError):
        nft_check(render_nftables(PROVIDER, shipped(), port=443).replace("ipv4_addr", "ipv4_adr"), tmp_path)


def test_terraform(tmp_path):
    text = render_terraform(PROVIDER, shipped(), port=443)
    check_terraform(text, tmp_path)
    assert 'resource "aws_vpc_security_group_ingress_rule" "swqos_cloudflare_ipv4"' in text
    assert "cidr_ipv6         = each.value" in text
    listed = set(json.loads("[" + text.split("swqos_cloudflare_ipv4 = [")[1].split("]")[0].rstrip().rstrip(",") + "]"))
    assert listed == set(shipped().ipv4)


@pytest.mark.skipif(not have("terraform"), reason="terraform not installed; structure still checked")
def test_terraform_check_is_not_vacuous(tmp_path):
    with pytest.raises(AssertionError):
        check_terraform(render_terraform(PROVIDER, shipped()).replace("= var.", "=  var."), tmp_path)


def test_rendered_ranges_are_collapsed_and_cover_the_snapshot():
    text = render_nftables(PROVIDER, shipped())
    for cidr in shipped().ipv4:
        host = ipaddress.ip_network(cidr).network_address
        assert any(host in ipaddress.ip_network(e) for e in text.split("elements = { ")[1].split(" }")[0].split(", "))
