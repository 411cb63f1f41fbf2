"""The Fastly example passes the same client-IP conformance suite as the first-party CDN plugins."""

import json
import logging
from pathlib import Path

import pytest

from swqos_cdn_fastly.resolver import FastlyResolver, FastlySettings
from swqos_core.errors import ConfigError
from swqos_core.layers import BuildContext
from swqos_testing.conformance import ClientIpResolverConformance


def build(settings: FastlySettings) -> FastlyResolver:
    ctx = BuildContext(name="fastly", kind="client_ip", process="proxy", config_dir=Path("."),
                       logger=logging.getLogger("test.fastly"))
    return FastlyResolver(settings, ctx)


class TestFastlyConformance(ClientIpResolverConformance):
    edge_peer_v4 = "ipv4:151.101.1.57:443"
    edge_peer_v6 = "ipv6:[2a04:4e42::57]:443"
    cdn_client = "151.101.65.1"

    def make_resolver(self, *, require_cdn, refresh_url=None, ranges_file=None, allow_non_global=False):
        return build(FastlySettings(require_cdn=require_cdn, refresh_url=refresh_url, ranges_file=ranges_file,
            allow_non_global=allow_non_global,
                                    client_ip_overwritten_by_service=True))

    def default_resolver(self):
        # the one setting without a safe default is the operator's statement about their VCL
        return build(FastlySettings(client_ip_overwritten_by_service=True))

    def client_headers(self, client):
        return [("fastly-client-ip", client)]

    def range_document(self, ipv4, ipv6, serial):
        return json.dumps({"addresses": ipv4, "ipv6_addresses": ipv6}).encode()


def test_refuses_to_start_without_the_vcl_statement():
    with pytest.raises(ConfigError, match="client_ip_overwritten_by_service"):
        build(FastlySettings())
