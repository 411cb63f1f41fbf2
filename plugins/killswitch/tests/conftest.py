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

from swqos_core.state import EnclaveIdentity, ServiceState
from swqos_killswitch.bundle import dump_bundle
from swqos_killswitch.drill import TLSServer
from swqos_killswitch.manifest import build_manifest
from swqos_killswitch.root import build_root, parse_root, root_sha256
from swqos_killswitch.signing import key_id, public_key_pem, sign_blob

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


# --- threshold trust: a root, its keys, bundles ------------------------------------------------


def bundle(data: bytes, signers: list[ec.EllipticCurvePrivateKey]) -> bytes:
    """A signature bundle over ``data`` with one entry per signer, in order (duplicates kept)."""
    return dump_bundle(data, [(key_id(k.public_key()), sign_blob(k, data)) for k in signers])


@dataclass
class RootKit:
    """A trust root on disk (``root.json`` + ``root.json.sig``) and every private key behind it."""

    directory: Path
    root_keys: list[ec.EllipticCurvePrivateKey]
    manifest_keys: list[ec.EllipticCurvePrivateKey]
    data: bytes
    sig: bytes

    @property
    def path(self) -> Path:
        return self.directory / "root.json"

    @property
    def sha256(self) -> str:
        return root_sha256(self.data)

    def manifest(self, version: int, by: list[int] | None = None, *, issued: dt.datetime | None = None,
                 ttl: float = 3600, signers: list[ec.EllipticCurvePrivateKey] | None = None,
                 not_before_in: float | None = None, **fields) -> tuple[bytes, bytes]:
        """A manifest signed by manifest keys ``by`` (indexes; default the first two) or ``signers``."""
        issued = issued or now() - dt.timedelta(seconds=5)
        fields.setdefault("scope", SCOPE)
        if not_before_in is not None:
            fields["not_before"] = issued + dt.timedelta(seconds=not_before_in)
        data = build_manifest(version=version, issued_at=issued, expires=issued + dt.timedelta(seconds=ttl), **fields)
        keys = signers if signers is not None else [self.manifest_keys[i] for i in (by if by is not None else [0, 1])]
        return data, bundle(data, keys)

    def next_root(self, *, version: int | None = None, drop_manifest: tuple[int, ...] = (),
                  add_manifest: int = 0, signed_by_old: int | None = None, signed_by_new: int | None = None,
                  expires_in: float = 86400, issued: dt.datetime | None = None, **over) -> tuple[bytes, bytes]:
        """Root v+1 (same root keys), minus manifest keys ``drop_manifest``, plus ``add_manifest`` new
        ones, signed by the first ``signed_by_old`` old and ``signed_by_new`` new root keys."""
        old = parse_root(self.data)
        keep = [k for i, k in enumerate(self.manifest_keys) if i not in drop_manifest]
        added = [ec.generate_private_key(ec.SECP256R1()) for _ in range(add_manifest)]
        issued = issued or now()
        kw = dict(version=version or old.version + 1, scope=old.scope, issued_at=issued,
                  expires=issued + dt.timedelta(seconds=expires_in), root_keys=[k.public_key() for k in self.root_keys],
                  root_threshold=old.root.threshold, manifest_keys=[k.public_key() for k in keep + added],
                  halt_threshold=min(old.halt_threshold, len(keep + added)),
                  lift_threshold=min(old.lift_threshold, len(keep + added)),
                  lift_timelock_seconds=old.lift_timelock_seconds)
        kw.update(over)
        data = build_root(**kw)
        n_old = old.root.threshold if signed_by_old is None else signed_by_old
        n_new = old.root.threshold if signed_by_new is None else signed_by_new
        # Same root keys in both roles here, so the signatures of the first max(n_old, n_new) keys count for both.
        signers = self.root_keys[:max(n_old, n_new)]
        self.manifest_keys = keep + added
        return data, bundle(data, signers)

    def adopt(self, data: bytes, sig: bytes) -> None:
        """Make a rotated root the kit's current one (for building the next)."""
        self.data, self.sig = data, sig


def make_root(directory: Path, *, n_root: int = 2, root_threshold: int = 2, n_manifest: int = 3, halt: int = 2,
              lift: int = 3, timelock: int = 0, expires_in: float = 86400, scope: str = SCOPE,
              issued: dt.datetime | None = None) -> RootKit:
    directory.mkdir(parents=True, exist_ok=True)
    root_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(n_root)]
    manifest_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(n_manifest)]
    issued = issued or now() - dt.timedelta(minutes=1)
    data = build_root(version=1, scope=scope, issued_at=issued, expires=issued + dt.timedelta(seconds=expires_in),
                      root_keys=[k.public_key() for k in root_keys], root_threshold=root_threshold,
                      manifest_keys=[k.public_key() for k in manifest_keys], halt_threshold=halt,
                      lift_threshold=lift, lift_timelock_seconds=timelock)
    sig = bundle(data, root_keys[:root_threshold])
    (directory / "root.json").write_bytes(data)
    (directory / "root.json.sig").write_bytes(sig)
    return RootKit(directory, root_keys, manifest_keys, data, sig)


@pytest.fixture
def root(tmp_path: Path) -> RootKit:
    """2 root keys (threshold 2); 3 manifest keys: halt 2, lift 3, no timelock."""
    return make_root(tmp_path / "root")


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
    #: Send the body chunked, as these exact (size line, data) chunks, then a last "0" chunk.
    chunked: list[tuple[bytes, bytes]] | None = None
    #: Extra response headers.
    headers: dict[str, str] = field(default_factory=dict)


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
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.chunked is not None:
                    self.send_header("Transfer-Encoding", "chunked")
                elif not route.no_length:
                    self.send_header("Content-Length", str(len(route.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if route.chunked is not None:
                    try:
                        for size_line, data in route.chunked:
                            self.wfile.write(size_line + b"\r\n" + data + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        pass
                    return
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
