"""The in-enclave forwarder, with TCP and Unix stand-ins for AF_VSOCK (not available here)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swqos_kms_nitro import forward

KMS_HOST = "kms.eu-west-1.amazonaws.com"


def _cert(tmp_path):
    """A test CA and a server certificate for the KMS host name."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, KMS_HOST)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(KMS_HOST)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "srv.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class TlsEcho:
    """A TLS server standing in for KMS behind the parent's vsock-proxy; records what it saw."""

    def __init__(self, tmp_path, listener: socket.socket) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tmp_path / "srv.pem")
        self.listener = listener
        self.sni: list[str | None] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        def on_sni(sock, name, ctx):
            self.sni.append(name)
        self.ctx.sni_callback = on_sni
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as tls:
                    data = tls.recv(1024)
                    tls.sendall(b"echo:" + data)
            except (OSError, ssl.SSLError):
                pass


def _client(tmp_path, port: int, hostname: str) -> bytes:
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=hostname) as tls:
        tls.sendall(b"hello")
        return tls.recv(1024)


def test_tls_runs_end_to_end_through_a_tcp_stand_in(tmp_path):
    _cert(tmp_path)
    upstream = socket.create_server(("127.0.0.1", 0))
    server = TlsEcho(tmp_path, upstream)
    port = upstream.getsockname()[1]
    with forward.Forwarder(lambda: socket.create_connection(("127.0.0.1", port)), ("127.0.0.1", 0)) as fwd:
        assert _client(tmp_path, fwd.address[1], KMS_HOST) == b"echo:hello"
        assert server.sni == [KMS_HOST]  # SNI reaches the far end: TLS is not terminated in between
        # The KMS certificate is still checked by name: a client expecting another host refuses.
        with pytest.raises(ssl.SSLCertVerificationError):
            _client(tmp_path, fwd.address[1], "kms.us-east-1.amazonaws.com")
    upstream.close()


def test_unix_socket_stand_in(tmp_path):
    _cert(tmp_path)
    path = str(tmp_path / "vsock.sock")
    upstream = socket.socket(socket.AF_UNIX)
    upstream.bind(path)
    upstream.listen()
    TlsEcho(tmp_path, upstream)

    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        return s

    with forward.Forwarder(connect, ("127.0.0.1", 0)) as fwd:
        assert _client(tmp_path, fwd.address[1], KMS_HOST) == b"echo:hello"
    upstream.close()


def test_unreachable_upstream_closes_the_client():
    def connect() -> socket.socket:
        raise ConnectionRefusedError("no vsock-proxy")

    with forward.Forwarder(connect, ("127.0.0.1", 0)) as fwd, \
            socket.create_connection(fwd.address, timeout=5) as c:
        assert c.recv(10) == b""


def test_only_loopback():
    with pytest.raises(ValueError, match="loopback"):
        forward.Forwarder(lambda: socket.socket(), ("0.0.0.0", 0))


def test_vsock_connection_fails_cleanly_outside_an_enclave():
    # Either Python lacks AF_VSOCK, or the kernel has no vsock transport / no parent CID 3 here.
    with pytest.raises(OSError):
        forward.vsock_connector(timeout=0.5)()


def test_provider_boots_through_the_forwarder(sealed, monkeypatch):
    # vsock replaced by TCP to the fake KMS; boto3 talks to the forwarder under a KMS-like name.
    kms_port = int(sealed.kms.endpoint_url.rsplit(":", 1)[1])
    monkeypatch.setattr("swqos_kms_nitro.provider.vsock_connector",
                        lambda cid, port: (lambda: socket.create_connection(("127.0.0.1", kms_port))))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        fwd_port = s.getsockname()[1]
    provider = sealed.provider(endpoint_url=f"http://localhost:{fwd_port}", vsock_proxy_port=8000,
                               forward_port=fwd_port)
    assert bytes(provider.load().seed) == sealed.seed
