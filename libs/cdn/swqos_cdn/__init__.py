"""What every CDN plugin shares: edge range sets, range snapshots and their refresh, the
edge-gated client-address rule, the lockdown renderers and the ``swqos cdn`` command group.

A CDN plugin (first-party or third-party) supplies three small things and gets the rest:

- a :class:`CdnProvider`: its name, the URL of its published ranges, a parser for that
  document and the snapshot shipped inside the package;
- a subclass of :class:`EdgeResolver` whose :meth:`EdgeResolver.client_ip` reads the CDN's
  client-address header (the edge check, ``require_cdn``, refresh and the "client is not the
  CDN itself" rule are done here, once);
- three thin hookimpls in its ``plugin.py``: ``swqos_addhooks`` calling :func:`require_kit`
  (so the kit's ``cdn`` plugin is loaded with it), ``swqos_register_client_ip_resolvers`` and
  ``swqos_register_cdn_providers`` (``register(PROVIDER)``: ``swqos cdn refresh`` / ``render`` /
  ``show`` then know it).

The kit's own ``cdn`` plugin adds the ``swqos cdn`` commands and, for every edge resolver a
config builds, the ``swqos_cdn_*`` metrics, the ``reload-cdn`` admin operation and the ``cdn``
status section (:mod:`swqos_cdn.contrib`).

Trust rule (the nginx ``set_real_ip_from`` model): a client-address header is read only when
the TCP peer is inside the CDN's published ranges. A peer outside them is either ignored
(``require_cdn = false``: the peer address stands) or refused with PERMISSION_DENIED. A client
address that is not globally routable is refused with PERMISSION_DENIED unless
``allow_non_global`` (staging) is set (:mod:`swqos_cdn.addresses`).
"""

__version__ = "0.1.0"

from swqos_cdn.addresses import NEVER_A_CLIENT, non_global_kind
from swqos_cdn.cli import CdnProviderError, add_cdn_commands, build_cdn_parser, collect_providers, run_cdn_command
from swqos_cdn.contrib import require_kit
from swqos_cdn.ranges import (
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
from swqos_cdn.refresh import CdnProvider, fetch, refresh, same_ranges, snapshot_from_document
from swqos_cdn.render import RENDER_FORMATS, RenderError, render_aws_sg, render_nftables, render_terraform
from swqos_cdn.resolver import REFRESH_OUTCOMES, EdgeResolver, EdgeSettings

__all__ = [
    "DEFAULT_STATE_DIR",
    "MAX_HEADER_VALUE",
    "MIN_PREFIXLEN",
    "NEVER_A_CLIENT",
    "REFRESH_OUTCOMES",
    "RENDER_FORMATS",
    "SNAPSHOT_FORMAT",
    "CdnProvider",
    "CdnProviderError",
    "EdgeResolver",
    "EdgeSettings",
    "IPNetwork",
    "ParsedRanges",
    "RangeError",
    "RangeSet",
    "RenderError",
    "Snapshot",
    "add_cdn_commands",
    "build_cdn_parser",
    "check_lists",
    "check_successor",
    "collect_providers",
    "fetch",
    "json_object",
    "load_best",
    "load_snapshot",
    "non_global_kind",
    "packaged_snapshot",
    "parse_network",
    "refresh",
    "render_aws_sg",
    "render_nftables",
    "render_terraform",
    "require_kit",
    "run_cdn_command",
    "same_ranges",
    "snapshot_from_document",
]
