"""Threat T7: the admin listener is loopback, a 0600 Unix socket, or mutual TLS, and nothing else."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swqos_core.errors import ConfigError
from swqos_ops.cli import Target, request
from swqos_ops.settings import AdminSettings
from swqos_ops.testing import admin_service, ops_config
from swqos_testing.stack import running_stack

TOKENS = {"token_authenticator": "api_token"}


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "192.0.2.10:9443", "203.0.113.5:0"])
def test_public_address_without_mtls_is_refused(listen):
    with pytest.raises(ValueError, match="T7"):
        AdminSettings(listen=listen, **TOKENS)


@pytest.mark.parametrize("listen", ["127.0.0.1:9443", "[::1]:9443", "localhost:9443", "127.0.0.2:1",
                                    "unix:///run/swqos/admin.sock"])
def test_loopback_and_unix_are_allowed(listen):
    assert AdminSettings(listen=listen, **TOKENS).listen == listen


@pytest.mark.parametrize("listen", ["admin.example.com:9443", "127.0.0.1", "unix://relative.sock", "vsock://3:5"])
def test_malformed_or_named_hosts_are_refused(listen):
    with pytest.raises(ValueError, match=r"\[layers.service.admin\] listen"):
        AdminSettings(listen=listen, **TOKENS)


def test_no_authentication_configured_is_refused():
    with pytest.raises(ValueError, match="no way to authenticate"):
        AdminSettings(listen="127.0.0.1:0")


def test_config_check_refuses_public_admin_without_mtls(tmp_path):
    """The exposure rule holds in the settings: ``swqos config check`` refuses it, nothing runs."""
    from swqos_core import config, plugins

    path = tmp_path / "proxy.toml"
    path.write_text('''[swqos]
plugins = ["ops"]
[proxy]
listen = "127.0.0.1:0"
tls_cert = "tls.crt"
tls_key = "tls.key"
enclave = "unix:///tmp/nope.sock"
[pipeline]
auth = []
services = ["admin"]
[layers.service.admin]
listen = "0.0.0.0:9443"
token_authenticator = "api_token"
''')
    cfg = config.load(path, process="proxy")
    pm, loaded, problems = plugins.load_plugins(cfg.core.plugins)
    assert problems == []
    registry = plugins.collect_registrations(pm, loaded)
    with pytest.raises(ConfigError, match=r"\[layers.service.admin\].*not a loopback address.*T7"):
        plugins.select(cfg, registry)


async def test_proxy_refuses_to_start_with_public_admin_without_mtls(tmp_path, admin_store):
    store, _ = admin_store
    cfg = ops_config(tmp_path, store, admin={"listen": "0.0.0.0:0"})
    with pytest.raises(ConfigError, match="not a loopback address"):
        async with running_stack(tmp_path, proxy=cfg):
            pytest.fail("the proxy started with a public admin listener and no mutual TLS")


async def test_proxy_refuses_admin_tokens_without_auth_plugin(tmp_path, admin_store):
    store, _ = admin_store
    cfg = ops_config(tmp_path, store, plugins=["auth_jwt"], pipeline={"rate_limit": []}, layers={},
                     admin={"token_authenticator": "nonexistent"})  # auth_jwt is loaded, but names no such implementation
    with pytest.raises(ConfigError, match="nonexistent"):
        async with running_stack(tmp_path, proxy=cfg):
            pytest.fail("started without a way to verify admin tokens")


async def test_unix_socket_is_owner_only(tmp_path, admin_store):
    store, token = admin_store
    sock = tmp_path / "run" / "admin.sock"
    cfg = ops_config(tmp_path, store, admin={"listen": f"unix://{sock}"})
    async with running_stack(tmp_path, proxy=cfg):
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        status, doc = await asyncio.to_thread(request, Target(f"unix://{sock}", token), "GET", "/v1/status")
        assert status == 200 and doc["enclave"]["reachable"] is True
        status, _ = await asyncio.to_thread(request, Target(f"unix://{sock}", None), "GET", "/v1/status")
        assert status == 401
    assert not sock.exists()


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _client_cert(ca_key, ca_cert, cn: str, directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / f"{cn}.crt", directory / f"{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_public_address_with_mtls_serves_only_certified_clients(tmp_path):
    ca_key, ca_cert = _ca("operators CA")
    (tmp_path / "operators-ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert, key = _client_cert(ca_key, ca_cert, "alice-operator", tmp_path)
    rogue_key, rogue_ca = _ca("rogue CA")
    rogue_cert, rogue_key_path = _client_cert(rogue_key, rogue_ca, "mallory", tmp_path)
    dev = tmp_path / "dev"  # running_stack writes the server certificate here
    cfg = ops_config(tmp_path, None, admin={
        "listen": "0.0.0.0:0", "client_ca": str(tmp_path / "operators-ca.pem"),
        "tls_cert": str(dev / "tls.crt"), "tls_key": str(dev / "tls.key")})
    async with running_stack(tmp_path, proxy=cfg) as stack:
        url = f"https://localhost:{admin_service(stack).port}"
        ok = Target(url, None, dev / "ca.pem", cert, key)
        status, _doc = await asyncio.to_thread(request, ok, "POST", "/v1/drain", {})
        assert status == 200 and stack.state.draining is True
        for target in (Target(url, None, dev / "ca.pem"), Target(url, None, dev / "ca.pem", rogue_cert,
                                                                  rogue_key_path)):
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                await asyncio.to_thread(request, target, "GET", "/v1/status")
        lines = [x for x in (tmp_path / "audit.jsonl").read_text().splitlines() if '"admin"' in x]
        assert any('"actor":"certificate:alice-operator"' in x for x in lines)
