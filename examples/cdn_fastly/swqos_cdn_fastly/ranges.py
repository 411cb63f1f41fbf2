"""Fastly's public IP list: the API document and the snapshot shipped in this package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from swqos_core.cdn import CdnProvider, ParsedRanges, RangeError, Snapshot

PUBLIC_IP_LIST_URL = "https://api.fastly.com/public-ip-list"
SNAPSHOT_RESOURCE = "fastly-public-ip-list.json"


def parse_public_ip_list(body: bytes) -> ParsedRanges:
    """``{"addresses": [IPv4 CIDRs], "ipv6_addresses": [IPv6 CIDRs]}``; no version, no etag."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RangeError("the response is not JSON (an HTML error page?)") from None
    if not isinstance(doc, dict):
        raise RangeError("the public IP list is not an object")
    v4, v6 = doc.get("addresses"), doc.get("ipv6_addresses")
    if not isinstance(v4, list) or not isinstance(v6, list):
        raise RangeError("addresses / ipv6_addresses missing or not lists")
    return ParsedRanges(ipv4=v4, ipv6=v6)


@cache
def shipped() -> Snapshot:
    data = resources.files(__package__).joinpath(SNAPSHOT_RESOURCE).read_bytes()
    return Snapshot.from_json(data, where=f"{__package__}/{SNAPSHOT_RESOURCE}")


PROVIDER = CdnProvider(
    name="fastly",
    title="Fastly",
    default_url=PUBLIC_IP_LIST_URL,
    parse=parse_public_ip_list,
    shipped=shipped,
)
