"""The cloudflare resolver against the shared client-IP conformance suite."""

import json
import logging
from pathlib import Path

from swqos_cdn_cloudflare.resolver import CloudflareResolver, CloudflareSettings
from swqos_core.layers import BuildContext
from swqos_testing.conformance import ClientIpResolverConformance


def build(settings: CloudflareSettings) -> CloudflareResolver:
    ctx = BuildContext(name="cloudflare", kind="client_ip", process="proxy", config_dir=Path("."),
                       logger=logging.getLogger("test.cloudflare"))
    return CloudflareResolver(settings, ctx)


class TestCloudflareConformance(ClientIpResolverConformance):
    edge_peer_v4 = "ipv4:173.245.48.10:443"
    edge_peer_v6 = "ipv6:[2606:4700::6810:1]:443"
    # Cross-zone Worker subrequests carry this (inside 2a06:98c0::/29).
    cdn_client = "2a06:98c0:3600::103"
    # Class E is Cloudflare's Pseudo IPv4 range: refused as such (INVALID_ARGUMENT, test_resolver.py).
    own_rule_for = frozenset({"240.0.0.1"})

    def make_resolver(self, *, require_cdn, refresh_url=None, ranges_file=None, allow_non_global=False):
        return build(CloudflareSettings(require_cdn=require_cdn, refresh_url=refresh_url, ranges_file=ranges_file,
            allow_non_global=allow_non_global))

    def default_resolver(self):
        return build(CloudflareSettings())

    def client_headers(self, client):
        return [("cf-connecting-ip", client)]

    def range_document(self, ipv4, ipv6, serial):
        return json.dumps({"result": {"ipv4_cidrs": ipv4, "ipv6_cidrs": ipv6, "etag": f"e{serial}"},
                           "success": True, "errors": [], "messages": []}).encode()


class TestCloudflarePseudoIpv4Conformance(TestCloudflareConformance):
    """The same bar with Pseudo IPv4 "Overwrite Headers" on (IPv4 clients still use CF-Connecting-IP)."""

    def make_resolver(self, *, require_cdn, refresh_url=None, ranges_file=None, allow_non_global=False):
        return build(CloudflareSettings(require_cdn=require_cdn, refresh_url=refresh_url, ranges_file=ranges_file,
            allow_non_global=allow_non_global,
                                        pseudo_ipv4_overwrite=True))

    def client_headers(self, client):
        if ":" in client and not client.startswith("::ffff:"):
            return [("cf-connecting-ip", "240.16.0.1"), ("cf-connecting-ipv6", client)]
        return [("cf-connecting-ip", client)]
