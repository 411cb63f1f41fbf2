"""Cloudflare-specific behaviour beyond the conformance suite: Pseudo IPv4, Authenticated Origin
Pulls, extra trusted ranges, periodic refresh, selection by TOML."""

import asyncio
import datetime as dt
import ipaddress
import logging
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swqos_cdn_cloudflare.resolver import CloudflareResolver, CloudflareSettings
from swqos_core import config, plugins
from swqos_core.errors import ConfigError, Rejection
from swqos_core.layers import BuildContext, ClientAddress
from swqos_testing.conformance import RangeDocumentServer
from swqos_testing.conformance.client_ip import head

EDGE = "ipv4:173.245.48.10:443"


def build(**kw) -> CloudflareResolver:
    ctx = BuildContext(name="cloudflare", kind="client_ip", process="proxy", config_dir=Path("."),
                       logger=logging.getLogger("test.cloudflare"))
    return CloudflareResolver(CloudflareSettings(**kw), ctx)


def resolve(r, peer, md=(), auth=None):
    return asyncio.run(r.resolve(head(peer, list(md), auth)))


def refused(r, peer, md=(), auth=None) -> Rejection:
    with pytest.raises(Rejection) as exc:
        resolve(r, peer, md, auth)
    return exc.value


# --- Pseudo IPv4 ------------------------------------------------------------------------

def test_pseudo_ipv4_address_refused_without_the_setting():
    exc = refused(build(), EDGE, [("cf-connecting-ip", "240.16.0.1")])
    assert exc.code == grpc.StatusCode.INVALID_ARGUMENT and "pseudo_ipv4_overwrite" in exc.reason


def test_pseudo_ipv4_overwrite_uses_the_ipv6_header():
    r = build(pseudo_ipv4_overwrite=True)
    got = resolve(r, EDGE, [("cf-connecting-ip", "240.16.0.1"), ("cf-connecting-ipv6", "2a01:4f8:5::1")])
    assert got.ip == ipaddress.ip_address("2a01:4f8:5::1")


def test_pseudo_ipv4_overwrite_without_ipv6_header_refuses_pseudo_address():
    r = build(pseudo_ipv4_overwrite=True)
    assert refused(r, EDGE, [("cf-connecting-ip", "240.16.0.1")]).code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("md", [
    [("cf-connecting-ip", "240.16.0.1"), ("cf-connecting-ipv6", "81.2.69.1")],
    [("cf-connecting-ip", "240.16.0.1"), ("cf-connecting-ipv6", "2a01:4f8::1"), ("cf-connecting-ipv6", "2a01:4f8::2")],
    [("cf-connecting-ipv6", "2a01:4f8::1")],  # CF-Connecting-IP is always sent alongside
])
def test_pseudo_ipv4_bad_combinations_refused(md):
    assert refused(build(pseudo_ipv4_overwrite=True), EDGE, md).code == grpc.StatusCode.INVALID_ARGUMENT


def test_ipv6_header_ignored_when_setting_off():
    got = resolve(build(), EDGE, [("cf-connecting-ip", "81.2.69.1"), ("cf-connecting-ipv6", "2a01:4f8::1")])
    assert got.ip == ipaddress.ip_address("81.2.69.1")


def test_binary_header_refused():
    assert refused(build(), EDGE, [("cf-connecting-ip", b"1.2.3.4")]).code == grpc.StatusCode.INVALID_ARGUMENT


# --- extra trusted ranges ----------------------------------------------------------------

def test_extra_trusted_range_is_an_edge():
    r = build(extra_trusted_ranges=["127.0.0.0/8"])
    got = resolve(r, "ipv4:127.0.0.1:5000", [("cf-connecting-ip", "81.2.69.1")])
    assert got == ClientAddress(ipaddress.ip_address("81.2.69.1"), "cloudflare", "ipv4:127.0.0.1:5000")
    assert refused(build(), "ipv4:127.0.0.1:5000", [("cf-connecting-ip", "81.2.69.1")]).code == \
        grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("bad", ["127.0.0.1/8", "nonsense", "0.0.0.0/0", "::/0"])
def test_bad_extra_range_is_a_config_error(bad):
    with pytest.raises(ValueError):
        CloudflareSettings(extra_trusted_ranges=[bad])


# --- Authenticated Origin Pulls ------------------------------------------------------------

def _ca_and_leaf(name: str):
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    lkey = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "origin-pull")]))
            .issuer_name(ca_name).public_key(lkey.public_key()).serial_number(2)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return ca.public_bytes(serialization.Encoding.PEM), leaf.public_bytes(serialization.Encoding.PEM)


def _auth(pem: bytes | None):
    ctx = {"transport_security_type": [b"ssl"]}
    if pem is not None:
        ctx["x509_pem_cert"] = [pem]
    return ctx


def test_origin_pull_cert_required(tmp_path):
    ca, leaf = _ca_and_leaf("zone CA")
    _other_ca, other_leaf = _ca_and_leaf("someone else")
    (tmp_path / "aop.pem").write_bytes(ca)
    r = build(require_origin_pull_cert=True, origin_pull_ca=tmp_path / "aop.pem")
    md = [("cf-connecting-ip", "81.2.69.1")]
    assert resolve(r, EDGE, md, _auth(leaf)).ip == ipaddress.ip_address("81.2.69.1")
    for auth in (None, _auth(None), _auth(other_leaf), _auth(b"garbage"), {"x509_pem_cert": [leaf]}):
        assert refused(r, EDGE, md, auth).code == grpc.StatusCode.PERMISSION_DENIED


def test_origin_pull_without_ca_relies_on_tls_verification():
    _, leaf = _ca_and_leaf("zone CA")
    r = build(require_origin_pull_cert=True)
    md = [("cf-connecting-ip", "81.2.69.1")]
    assert isinstance(resolve(r, EDGE, md, _auth(leaf)), ClientAddress)
    assert refused(r, EDGE, md, _auth(None)).code == grpc.StatusCode.PERMISSION_DENIED


def test_origin_pull_ca_without_require_is_a_config_error(tmp_path):
    ca, _ = _ca_and_leaf("zone CA")
    (tmp_path / "aop.pem").write_bytes(ca)
    with pytest.raises(ConfigError):
        build(origin_pull_ca=tmp_path / "aop.pem")
    with pytest.raises(ConfigError):
        build(require_origin_pull_cert=True, origin_pull_ca=tmp_path / "missing.pem")


# --- ranges file and periodic refresh -----------------------------------------------------

def test_invalid_ranges_file_is_a_config_error(tmp_path):
    (tmp_path / "r.json").write_text("{not json")
    with pytest.raises(ConfigError):
        build(ranges_file=tmp_path / "r.json")


def test_missing_ranges_file_falls_back_to_the_shipped_snapshot(tmp_path):
    r = build(ranges_file=tmp_path / "absent.json")
    assert r.snapshot.etag == "38f79d050aa027e3be3865e495dcc9bc"


async def test_periodic_refresh_swaps_the_list_and_stops_on_close():
    import json
    with RangeDocumentServer() as srv:
        srv.body = json.dumps({"success": True, "result": {"ipv4_cidrs": ["45.0.0.0/24"], "ipv6_cidrs": ["2a0f:1234::/32"],
                                                           "etag": "new"}}).encode()
        r = build(refresh_url=srv.url, refresh_interval=1.0)
        await r.start()
        try:
            for _ in range(100):  # wait for the first refresh (not a timing assertion: bounded poll)
                if r.snapshot.etag == "new":
                    break
                await asyncio.sleep(0.05)
            assert r.snapshot.etag == "new"
            got = await r.resolve(head("ipv4:45.0.0.1:443", [("cf-connecting-ip", "81.2.69.1")]))
            assert got.ip == ipaddress.ip_address("81.2.69.1")
        finally:
            await r.close()
        assert r._task is None


def test_refresh_interval_validated():
    with pytest.raises(ValueError):
        CloudflareSettings(refresh_interval=0.5)


# --- selected by TOML through the real plugin loader ----------------------------------------

def test_selected_by_toml(tmp_path):
    (tmp_path / "config.toml").write_text("""
[swqos]
plugins = ["cdn_cloudflare"]
[proxy]
tls_cert = "tls.crt"
tls_key = "tls.key"
enclave = "unix:///tmp/e.sock"
[pipeline]
auth = []
client_ip = ["cloudflare"]
[layers.client_ip.cloudflare]
extra_trusted_ranges = ["127.0.0.0/8"]
""")
    app = plugins.build_app(config.load(tmp_path / "config.toml"))
    (name, resolver), = app.layers["client_ip"]
    assert name == "cloudflare" and isinstance(resolver, CloudflareResolver)
    assert resolver.settings.require_cdn is True


def test_unknown_setting_is_refused(tmp_path):
    (tmp_path / "config.toml").write_text("""
[swqos]
plugins = ["cdn_cloudflare"]
[proxy]
tls_cert = "tls.crt"
tls_key = "tls.key"
enclave = "unix:///tmp/e.sock"
[pipeline]
auth = []
client_ip = ["cloudflare"]
[layers.client_ip.cloudflare]
requre_cdn = false
""")
    with pytest.raises(ConfigError, match="requre_cdn"):
        plugins.build_app(config.load(tmp_path / "config.toml"))
