"""Fixtures for the kill-switch tests: signing keys, manifests, a real local HTTPS server."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swqos_core.killswitch.drill import TLSServer
from swqos_core.killswitch.manifest import build_manifest
from swqos_core.killswitch.signing import key_id, public_key_pem, sign_blob
from swqos_core.state import EnclaveIdentity, ServiceState

RELEASE = "1.3.1"
MEASUREMENT = "ab" * 48
SCOPE = "test-fleet"
UTC = dt.UTC


def now() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)


@dataclass
class Keys:
    private: ec.EllipticCurvePrivateKey
    pub_path: Path
    key_id: str

    def manifest(self, version: int, *, issued: dt.datetime | None = None, ttl: float = 3600,
                 **fields) -> tuple[bytes, bytes]:
        issued = issued or now() - dt.timedelta(seconds=5)
        fields.setdefault("scope", SCOPE)
        data = build_manifest(version=version, issued_at=issued, expires=issued + dt.timedelta(seconds=ttl),
                              key_id=self.key_id, **fields)
        return data, sign_blob(self.private, data)


def make_keys(directory: Path, name: str = "cosign") -> Keys:
    directory.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    pub_path = directory / f"{name}.pub"
    pub_path.write_bytes(public_key_pem(private.public_key()))
    return Keys(private, pub_path, key_id(private.public_key()))


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


@pytest.fixture
def other_keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "other-keys", "other")


def make_state(release: str = RELEASE, measurement: str | None = MEASUREMENT) -> ServiceState:
    state = ServiceState(release_version=release)
    state.set_enclave(True, EnclaveIdentity(public_key=b"\x01" * 32, measurement=measurement, signatures=0))
    return state


@pytest.fixture
def state() -> ServiceState:
    return make_state()


# --- a real HTTPS server --------------------------------------------------------------------


def make_tls_cert(directory: Path) -> tuple[Path, Path]:
    """Self-signed certificate for 127.0.0.1 / localhost; the test pins it as the only CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "killswitch-test")])
    start = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    #: Seconds between bytes: a slow-retrieval server.
    trickle: float | None = None
    #: Send no Content-Length and close at the end (forces read-to-EOF).
    no_length: bool = False


@dataclass
class DocServer:
    """Threaded HTTPS server over a dict of routes, changeable while it runs."""

    cert: Path
    key: Path
    routes: dict[str, Route] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def start(self) -> DocServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                if not route.no_length:
                    self.send_header("Content-Length", str(len(route.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if route.trickle is None:
                    self.wfile.write(route.body)
                    return
                try:
                    for i in range(len(route.body)):
                        self.wfile.write(route.body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(route.trickle)
                        if server.stopping.is_set():
                            return
                except OSError:
                    return

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        self.httpd = TLSServer(("127.0.0.1", 0), Handler, ctx, handshake_timeout=10.0)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def publish(self, manifest: bytes, signature: bytes, path: str = "/revocation.json") -> None:
        self.routes[path + ".sig"] = Route(signature, content_type="text/plain")
        self.routes[path] = Route(manifest)

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return make_tls_cert(tmp_path / "tls")


@pytest.fixture
def server(tls_files):
    srv = DocServer(*tls_files).start()
    yield srv
    srv.stop()


@pytest.fixture
def kit():
    """This module, for its helpers and constants (test modules cannot import a conftest)."""
    return sys.modules[__name__]
