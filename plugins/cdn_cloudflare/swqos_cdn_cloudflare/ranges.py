"""Cloudflare's published edge ranges: the API document, and the snapshot shipped in this package."""

from __future__ import annotations

from swqos_cdn import CdnProvider, ParsedRanges, RangeError, json_object, packaged_snapshot

API_URL = "https://api.cloudflare.com/client/v4/ips"
SNAPSHOT_RESOURCE = "cloudflare-ips.json"


def parse_api(body: bytes) -> ParsedRanges:
    """Parse ``GET /client/v4/ips``: the v4 envelope ``{"success": true, "result": {...}}``."""
    doc = json_object(body, "the Cloudflare API response")
    if doc.get("success") is not True:
        raise RangeError("the API did not report success")
    result = doc.get("result")
    if not isinstance(result, dict):
        raise RangeError("the API response has no result object")
    v4, v6, etag = result.get("ipv4_cidrs"), result.get("ipv6_cidrs"), result.get("etag")
    if not isinstance(v4, list) or not isinstance(v6, list):
        raise RangeError("ipv4_cidrs / ipv6_cidrs missing or not lists")
    if etag is not None and not isinstance(etag, str):
        raise RangeError("etag is not a string")
    return ParsedRanges(ipv4=v4, ipv6=v6, etag=etag)


shipped = packaged_snapshot(__package__, SNAPSHOT_RESOURCE)


PROVIDER = CdnProvider(
    name="cloudflare",
    title="Cloudflare",
    default_url=API_URL,
    parse=parse_api,
    shipped=shipped,
)
