"""``swqos serve --dev``: the whole system on loopback, like ``vault server -dev``.

Generates an identity key, a self-signed CA and TLS certificate, a development ES256 token
issuer and both configs into one directory, starts the enclave as a child process on a Unix
socket and the host-proxy in this process.

The dev stack is the core plus first-party plugins (payload_tls_cv, auth_jwt, ratelimit); tokens
are minted by auth_jwt's issuer, the same code ``swqos token issue`` uses.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swqos_core.files import write_private_file
from swqos_core.identity import generate_in_child, to_base58

DEV_ISSUER = "swqos-dev"  # the values swqos_auth_jwt.issuer.mint_dev signs with
DEV_KID = "dev-1"


@dataclass(frozen=True)
class DevDir:
    root: Path

    def __getattr__(self, name: str) -> Path:  # dev.config, dev.ca, ... (see FILES)
        try:
            return self.root / FILES[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def socket(self) -> Path:
        return self.root / "enclave.sock"

    def identity_b58(self) -> str:
        return self.identity_pub.read_text().strip()

    def audience(self) -> str:
        return f"validator:{self.identity_b58()}"


FILES = {
    "config": "config.toml",
    "enclave_config": "enclave.toml",
    "ca": "ca.pem",
    "tls_cert": "tls.crt",
    "tls_key": "tls.key",
    "identity": "identity.json",
    "identity_pub": "identity.pub",
    "issuer_key": "issuer.key",
    "issuer_pub": "issuer.pub.pem",
    "trader_jwt": "trader.jwt",
}


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls(dev: DevDir, hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> None:
    """A throwaway CA and a server certificate for ``hosts``, valid for 30 days."""
    now = dt.datetime.now(dt.UTC)
    ca_key = _ec_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swqos dev CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = _ec_key()
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    dev.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    dev.tls_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private_file(dev.tls_key, _pem_private(key))


def mint_dev_token(dev: DevDir, sub: str, *, ttl: int = 300, **claims: Any) -> str:
    """An ES256 JWT from the dev issuer that passes the ``jwt`` authenticator's nine steps."""
    try:
        from swqos_auth_jwt.issuer import mint_dev
    except ImportError:
        raise RuntimeError("the dev stack needs the swqos-auth-jwt plugin: pip install -r requirements-dev.txt") from None
    return mint_dev(dev.root, sub, ttl, **claims)


def proxy_config(dev: DevDir, listen: str, *, rate_limits: bool = True) -> dict[str, Any]:
    """The dev proxy config; ``rate_limits=False`` leaves the limiter out (tests that add their own)."""
    data: dict[str, Any] = {
        "swqos": {"plugins": ["auth_jwt"]},
        "proxy": {
            "listen": listen,
            "tls_cert": str(dev.tls_cert),
            "tls_key": str(dev.tls_key),
            "enclave": f"unix://{dev.socket}",
        },
        "pipeline": {"client_ip": ["peer"], "auth": ["jwt"], "validate": ["limits"]},
        "layers": {"auth": {"jwt": {
            "issuer": DEV_ISSUER,
            "audience": dev.audience(),
            "keys": {DEV_KID: {"public_key": str(dev.issuer_pub)}},
        }}},
    }
    if rate_limits:
        from swqos_ratelimit.defaults import dev_settings  # loose quotas: one loopback address, benchmarks

        data["swqos"]["plugins"].append("ratelimit")
        data["pipeline"]["rate_limit"] = ["gcra"]
        data["layers"]["rate_limit"] = {"gcra": dev_settings()}
    return data


def enclave_config(dev: DevDir) -> dict[str, Any]:
    return {
        "swqos": {"plugins": ["payload_tls_cv"]},
        "enclave": {"listen": f"unix://{dev.socket}", "expected_public_key": dev.identity_b58()},
        "pipeline": {"payload_match": "tls_cv", "key_provider": "file", "signer": "ed25519"},
        "layers": {"key_provider": {"file": {"path": str(dev.identity)}}},
    }


def prepare(root: Path, listen: str = "127.0.0.1:0") -> DevDir:
    """Create every file of a dev stack in ``root`` (which must be empty or missing)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    dev = DevDir(root.resolve())
    if dev.identity.exists():
        raise FileExistsError(f"{root} already holds a dev stack; choose an empty directory")
    public = generate_in_child(dev.identity)  # the key never enters this (the proxy's) process
    dev.identity_pub.write_text(to_base58(public) + "\n")
    make_tls(dev)
    issuer = _ec_key()
    write_private_file(dev.issuer_key, _pem_private(issuer))
    dev.issuer_pub.write_bytes(issuer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    write_toml(dev.config, proxy_config(dev, listen))
    write_toml(dev.enclave_config, enclave_config(dev))
    dev.trader_jwt.write_text(mint_dev_token(dev, "dev-trader", ttl=900) + "\n")
    return dev


def write_toml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(tomli_w.dumps(data))
