"""CloudFront's origin-facing ranges: ``ip-ranges.json`` and the snapshot shipped in this package."""

from __future__ import annotations

from swqos_cdn import CdnProvider, ParsedRanges, RangeError, json_object, packaged_snapshot

IP_RANGES_URL = "https://ip-ranges.amazonaws.com/ip-ranges.json"
SERVICE = "CLOUDFRONT_ORIGIN_FACING"
SNAPSHOT_RESOURCE = "cloudfront-origin-facing.json"
#: AWS-managed prefix lists holding the same ranges (weight 55 each in a security group).
PREFIX_LISTS = (
    (4, "com.amazonaws.global.cloudfront.origin-facing"),
    (6, "com.amazonaws.global.ipv6.cloudfront.origin-facing"),
)


def parse_ip_ranges(body: bytes) -> ParsedRanges:
    """Keep the ``CLOUDFRONT_ORIGIN_FACING`` prefixes of ``ip-ranges.json``; ``syncToken`` is the version.

    ``CLOUDFRONT`` (without the suffix) is the viewer-facing set: never an origin's peer.
    """
    doc = json_object(body, "ip-ranges.json")
    token = doc.get("syncToken")
    if not isinstance(token, str) or not token.isascii() or not token.isdigit() or len(token) > 12:
        raise RangeError("syncToken missing or not a decimal string")
    v4 = _service_prefixes(doc.get("prefixes"), "ip_prefix")
    v6 = _service_prefixes(doc.get("ipv6_prefixes"), "ipv6_prefix")
    return ParsedRanges(ipv4=v4, ipv6=v6, serial=int(token))


def _service_prefixes(entries: object, key: str) -> list[str]:
    if not isinstance(entries, list):
        raise RangeError(f"{key.replace('_prefix', '')} prefix list missing")
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise RangeError("a prefix entry is not an object")
        if entry.get("service") == SERVICE:
            out.append(entry.get(key))  # validated (type, CIDR syntax) by the core
    return out


shipped = packaged_snapshot(__package__, SNAPSHOT_RESOURCE)


PROVIDER = CdnProvider(
    name="cloudfront",
    title="CloudFront",
    default_url=IP_RANGES_URL,
    parse=parse_ip_ranges,
    shipped=shipped,
    serial_is_version=True,
    aws_prefix_lists=PREFIX_LISTS,
    max_bytes=32 << 20,  # the whole AWS file, every service (a few MB and growing)
)
