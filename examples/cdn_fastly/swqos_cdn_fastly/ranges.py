"""Fastly's public IP list: the API document and the snapshot shipped in this package."""

from __future__ import annotations

from swqos_cdn import CdnProvider, ParsedRanges, RangeError, json_object, packaged_snapshot

PUBLIC_IP_LIST_URL = "https://api.fastly.com/public-ip-list"
SNAPSHOT_RESOURCE = "fastly-public-ip-list.json"


def parse_public_ip_list(body: bytes) -> ParsedRanges:
    """``{"addresses": [IPv4 CIDRs], "ipv6_addresses": [IPv6 CIDRs]}``; no version, no etag."""
    doc = json_object(body, "the public IP list")
    v4, v6 = doc.get("addresses"), doc.get("ipv6_addresses")
    if not isinstance(v4, list) or not isinstance(v6, list):
        raise RangeError("addresses / ipv6_addresses missing or not lists")
    return ParsedRanges(ipv4=v4, ipv6=v6)


shipped = packaged_snapshot(__package__, SNAPSHOT_RESOURCE)


PROVIDER = CdnProvider(
    name="fastly",
    title="Fastly",
    default_url=PUBLIC_IP_LIST_URL,
    parse=parse_public_ip_list,
    shipped=shipped,
)
