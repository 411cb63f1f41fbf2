"""The cloudfront resolver against the shared client-IP conformance suite."""

import logging
from pathlib import Path

from swqos_cdn_cloudfront.resolver import CloudFrontResolver, CloudFrontSettings
from swqos_core.layers import BuildContext
from swqos_testing.conformance import ClientIpResolverConformance

from .cloudfront_helpers import ip_ranges


def build(settings: CloudFrontSettings) -> CloudFrontResolver:
    ctx = BuildContext(name="cloudfront", kind="client_ip", process="proxy", config_dir=Path("."),
                       logger=logging.getLogger("test.cloudfront"))
    return CloudFrontResolver(settings, ctx)




class TestCloudFrontViewerAddressConformance(ClientIpResolverConformance):
    edge_peer_v4 = "ipv4:130.176.1.10:443"
    edge_peer_v6 = "ipv6:[2600:9000:1400::10]:443"
    cdn_client = "15.158.3.4"

    def make_resolver(self, *, require_cdn, refresh_url=None, ranges_file=None, allow_non_global=False):
        return build(CloudFrontSettings(require_cdn=require_cdn, refresh_url=refresh_url, ranges_file=ranges_file,
            allow_non_global=allow_non_global))

    def default_resolver(self):
        return build(CloudFrontSettings())

    def client_headers(self, client):
        # CloudFront appends the source port; IPv6 comes unbracketed (split at the last colon).
        return [("cloudfront-viewer-address", f"{client}:46532")]

    def raw_header(self, value):
        return [("cloudfront-viewer-address", value)]

    def range_document(self, ipv4, ipv6, serial):
        return ip_ranges(ipv4, ipv6, serial)


class TestCloudFrontBracketedConformance(TestCloudFrontViewerAddressConformance):
    """``[v6]:port`` is accepted as well (harmless, and what a fronting proxy may write)."""

    def client_headers(self, client):
        return [("cloudfront-viewer-address", f"[{client}]:46532" if ":" in client else f"{client}:46532")]


class TestCloudFrontXffConformance(TestCloudFrontViewerAddressConformance):
    """X-Forwarded-For mode: the right-most entry that is not a trusted edge."""

    list_header = True

    def make_resolver(self, *, require_cdn, refresh_url=None, ranges_file=None, allow_non_global=False):
        return build(CloudFrontSettings(require_cdn=require_cdn, refresh_url=refresh_url, ranges_file=ranges_file,
            allow_non_global=allow_non_global,
                                        client_header="x-forwarded-for"))

    def default_resolver(self):
        return build(CloudFrontSettings(client_header="x-forwarded-for"))

    def client_headers(self, client):
        # A viewer that sent no X-Forwarded-For: CloudFront's entry is the whole header.
        # (Viewer-supplied entries to the left are covered in test_resolver.py.)
        return [("x-forwarded-for", client)]

    def raw_header(self, value):
        return [("x-forwarded-for", value)]
