"""T13: switching a validator's CDN from Cloudflare to CloudFront is one config line."""

from swqos_cdn_cloudflare.resolver import CloudflareResolver
from swqos_cdn_cloudfront.resolver import CloudFrontResolver
from swqos_core import config, plugins

BASE = """
[swqos]
plugins = ["cdn_cloudflare", "cdn_cloudfront"]
[proxy]
tls_cert = "tls.crt"
tls_key = "tls.key"
enclave = "unix:///tmp/enclave.sock"
[pipeline]
auth = []
client_ip = ["cloudflare"]
[layers.client_ip.cloudflare]
require_cdn = true
[layers.client_ip.cloudfront]
require_cdn = true
client_header = "viewer-address"
"""


def test_one_line_switches_the_cdn(tmp_path):
    before = tmp_path / "before.toml"
    after = tmp_path / "after.toml"
    before.write_text(BASE)
    after.write_text(BASE.replace('client_ip = ["cloudflare"]', 'client_ip = ["cloudfront"]'))
    diff = [(a, b) for a, b in zip(BASE.splitlines(), after.read_text().splitlines(), strict=True) if a != b]
    assert len(diff) == 1
    (_, r1), = plugins.build_app(config.load(before)).layers["client_ip"]
    (_, r2), = plugins.build_app(config.load(after)).layers["client_ip"]
    assert isinstance(r1, CloudflareResolver) and isinstance(r2, CloudFrontResolver)
    assert r1.settings.require_cdn and r2.settings.require_cdn
