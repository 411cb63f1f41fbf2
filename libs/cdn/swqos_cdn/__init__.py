"""What every CDN plugin shares: edge range sets, range snapshots and their refresh, the
edge-gated client-address rule, the lockdown renderers and the ``swqos cdn`` command group.

A CDN plugin (first-party or third-party) supplies three small things and gets the rest:

- a :class:`CdnProvider`: its name, the URL of its published ranges, a parser for that
  document and the snapshot shipped inside the package;
- a subclass of :class:`EdgeResolver` whose :meth:`EdgeResolver.client_ip` reads the CDN's
  client-address header (the edge check, ``require_cdn``, refresh and the "client is not the
  CDN itself" rule are done here, once);
- one line in its ``swqos_add_commands`` hook: ``add_cdn_provider(subparsers, PROVIDER)``,
  which adds it to ``swqos cdn refresh`` / ``render`` / ``show``.

Trust rule (the nginx ``set_real_ip_from`` model): a client-address header is read only when
the TCP peer is inside the CDN's published ranges. A peer outside them is either ignored
(``require_cdn = false``: the peer address stands) or refused with PERMISSION_DENIED.
"""

from swqos_core.cdn.cli import add_cdn_provider, build_cdn_parser, run_cdn_command
from swqos_core.cdn.ranges import (
    DEFAULT_STATE_DIR,
    MAX_HEADER_VALUE,
    MIN_PREFIXLEN,
    SNAPSHOT_FORMAT,
    IPNetwork,
    ParsedRanges,
    RangeError,
    RangeSet,
    Snapshot,
    check_lists,
    check_successor,
    json_object,
    load_best,
    load_snapshot,
    packaged_snapshot,
    parse_network,
)
from swqos_core.cdn.refresh import CdnProvider, fetch, refresh, same_ranges, snapshot_from_document
from swqos_core.cdn.render import RENDER_FORMATS, RenderError, render_aws_sg, render_nftables, render_terraform
from swqos_core.cdn.resolver import EdgeResolver, EdgeSettings

__all__ = [
    "DEFAULT_STATE_DIR",
    "MAX_HEADER_VALUE",
    "MIN_PREFIXLEN",
    "RENDER_FORMATS",
    "SNAPSHOT_FORMAT",
    "CdnProvider",
    "EdgeResolver",
    "EdgeSettings",
    "IPNetwork",
    "ParsedRanges",
    "RangeError",
    "RangeSet",
    "RenderError",
    "Snapshot",
    "add_cdn_provider",
    "build_cdn_parser",
    "check_lists",
    "check_successor",
    "fetch",
    "json_object",
    "load_best",
    "load_snapshot",
    "packaged_snapshot",
    "parse_network",
    "refresh",
    "render_aws_sg",
    "render_nftables",
    "render_terraform",
    "run_cdn_command",
    "same_ranges",
    "snapshot_from_document",
]
