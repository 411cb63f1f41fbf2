"""Lockdown rules that admit the origin port from the CDN only (threat T7)."""

from __future__ import annotations

import json
from typing import Any

from swqos_cdn.ranges import Snapshot
from swqos_cdn.refresh import CdnProvider

RENDER_FORMATS = ("aws-sg", "terraform", "nftables")


class RenderError(Exception):
    """The requested rules cannot be rendered as asked (the message says what to pass)."""


def _collapsed(snap: Snapshot) -> tuple[list[str], list[str]]:
    ranges = snap.ranges
    return [str(n) for n in ranges.ipv4], [str(n) for n in ranges.ipv6]


def _origin(provider: CdnProvider, snap: Snapshot) -> str:
    tag = snap.etag or str(snap.serial)
    return f"{provider.title} ranges fetched {snap.fetched_at} ({tag})"


def render_aws_sg(
    provider: CdnProvider,
    snap: Snapshot,
    *,
    port: int = 443,
    group_id: str | None = None,
    prefix_list_ids: dict[int, str] | None = None,
) -> str:
    """JSON for ``aws ec2 authorize-security-group-ingress --cli-input-json``.

    With ``prefix_list_ids`` (CloudFront's managed lists) the rule names the lists; otherwise it
    lists the CIDRs of the snapshot. ``GroupId`` is left out unless given, so
    ``--group-id sg-...`` on the command line supplies it.
    """
    desc = f"swqos {provider.title} edge"
    perm: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    if prefix_list_ids:
        perm["PrefixListIds"] = [{"PrefixListId": pl, "Description": f"{desc} IPv{fam}"}
                                 for fam, pl in sorted(prefix_list_ids.items())]
    else:
        v4, v6 = _collapsed(snap)
        if v4:
            perm["IpRanges"] = [{"CidrIp": c, "Description": desc} for c in v4]
        if v6:
            perm["Ipv6Ranges"] = [{"CidrIpv6": c, "Description": desc} for c in v6]
    doc: dict[str, Any] = {}
    if group_id:
        doc["GroupId"] = group_id
    doc["IpPermissions"] = [perm]
    return json.dumps(doc, indent=2) + "\n"


def _hcl_list(name: str, items: list[str]) -> list[str]:
    if not items:
        return [f"  {name} = []"]
    return [f"  {name} = [", *[f'    "{c}",' for c in items], "  ]"]


def _hcl_block(header: str, attrs: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in attrs)
    return [f"{header} {{", *[f"  {k.ljust(width)} = {v}" for k, v in attrs], "}", ""]


def render_terraform(provider: CdnProvider, snap: Snapshot, *, port: int = 443) -> str:
    """Terraform (AWS provider >= 5) ingress rules admitting ``port`` from the CDN only.

    CloudFront uses the AWS-managed prefix lists (looked up by name with a data source, so no
    ID is needed); other CDNs list the snapshot's CIDRs.
    """
    ident = provider.name.replace("-", "_")
    desc = f'"swqos {provider.title} edge"'
    out = [
        f"# swqos lockdown: TCP {port} from {provider.title} only.",
        f"# Rendered by `swqos cdn render --provider {provider.name} --format terraform --port {port}`",
        f"# from {_origin(provider, snap)}. Re-render after `swqos cdn refresh {provider.name}`.",
        "",
        *_hcl_block('variable "security_group_id"', [
            ("description", '"Security group of the swqos host-proxy"'), ("type", "string")]),
    ]
    common = [("security_group_id", "var.security_group_id"), ("description", desc),
              ("ip_protocol", '"tcp"'), ("from_port", str(port)), ("to_port", str(port))]
    if provider.aws_prefix_lists:
        for fam, pl_name in provider.aws_prefix_lists:
            data = f"{ident}_origin_facing_ipv{fam}"
            out += _hcl_block(f'data "aws_ec2_managed_prefix_list" "{data}"', [("name", f'"{pl_name}"')])
            out += _hcl_block(f'resource "aws_vpc_security_group_ingress_rule" "swqos_{ident}_ipv{fam}"',
                              [*common, ("prefix_list_id", f"data.aws_ec2_managed_prefix_list.{data}.id")])
    else:
        v4, v6 = _collapsed(snap)
        out += ["locals {", *_hcl_list(f"swqos_{ident}_ipv4", v4), *_hcl_list(f"swqos_{ident}_ipv6", v6), "}", ""]
        for fam in (4, 6):
            out += _hcl_block(f'resource "aws_vpc_security_group_ingress_rule" "swqos_{ident}_ipv{fam}"', [
                ("for_each", f"toset(local.swqos_{ident}_ipv{fam})"), *common, (f"cidr_ipv{fam}", "each.value")])
    return "\n".join(out).rstrip("\n") + "\n"


def render_nftables(provider: CdnProvider, snap: Snapshot, *, port: int = 443) -> str:
    """An nftables ruleset (``nft -f``): TCP ``port`` is accepted from the CDN's ranges and
    dropped from everywhere else. Loading it again replaces the previous version atomically."""
    table = f"swqos_cdn_{provider.name.replace('-', '_')}"
    v4, v6 = _collapsed(snap)
    lines = [
        f"# swqos lockdown: TCP {port} from {provider.title} only.",
        f"# Rendered by `swqos cdn render --provider {provider.name} --format nftables --port {port}`",
        f"# from {_origin(provider, snap)}.",
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
    ]
    for fam, items in ((4, v4), (6, v6)):
        lines += [f"\tset edge_ipv{fam} {{", f"\t\ttype ipv{fam}_addr", "\t\tflags interval"]
        if items:
            lines.append(f"\t\telements = {{ {', '.join(items)} }}")
        lines.append("\t}")
    lines += [
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f"\t\ttcp dport {port} ip saddr @edge_ipv4 accept",
        f"\t\ttcp dport {port} ip6 saddr @edge_ipv6 accept",
        f"\t\ttcp dport {port} counter drop",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"
