"""An in-process gRPC Signer over real TLS, scripted per call, for the SDK's unit tests."""

from __future__ import annotations

import datetime
import ipaddress
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from swqos_proto import SERVICE, signer_pb2


def make_tls() -> tuple[bytes, bytes, bytes]:
    """(ca_pem, cert_pem, key_pem): a self-signed CA-less server cert for localhost / 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swqos-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("signer.test"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, cert_pem, key_pem


@dataclass
class Step:
    """What the fake does for one call: sign (code None) or abort with a status."""

    code: grpc.StatusCode | None = None
    details: str = ""
    retry_after: str | None = None
    delay: float = 0.0
    bad_signature: bool = False


@dataclass
class Seen:
    method: str
    metadata: dict[str, str]
    payload: bytes
    at: float


@dataclass
class FakeSigner:
    ca_pem: bytes
    target: str
    key: Ed25519PrivateKey
    script: list[Step] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def public_key_base58(self) -> str:
        import base58

        return base58.b58encode(self.public_key).decode()

    def _next(self) -> Step:
        with self.lock:
            return self.script.pop(0) if self.script else Step()

    def _prelude(self, method: str, payload: bytes, context: grpc.ServicerContext) -> Step:
        md = {k: v for k, v in context.invocation_metadata()}
        with self.lock:
            self.seen.append(Seen(method, md, payload, time.monotonic()))
        step = self._next()
        if step.delay:
            time.sleep(step.delay)
        if step.code is not None:
            if step.retry_after is not None:
                context.set_trailing_metadata((("retry-after", step.retry_after),))
            context.abort(step.code, step.details)
        return step

    def sign(self, req: signer_pb2.SignCertificateVerifyRequest, context: grpc.ServicerContext):
        step = self._prelude("sign", bytes(req.payload), context)
        sig = self.key.sign(bytes(req.payload))
        if step.bad_signature:
            sig = bytes(64)
        with self.lock:
            self.signatures += 1
        return signer_pb2.SignCertificateVerifyResponse(signature=sig)

    def identity(self, req: signer_pb2.GetIdentityRequest, context: grpc.ServicerContext):
        self._prelude("identity", bytes(req.nonce), context)
        return signer_pb2.GetIdentityResponse(public_key=self.public_key)


@pytest.fixture(scope="session")
def tls_material() -> tuple[bytes, bytes, bytes]:
    return make_tls()


def start_fake_signer(tls_material: tuple[bytes, bytes, bytes], port: int = 0) -> tuple[FakeSigner, grpc.Server]:
    """A running fake signer on 127.0.0.1:``port`` (0: any free port); stop the server when done."""
    ca, cert, key = tls_material
    fake = FakeSigner(ca_pem=ca, target="", key=Ed25519PrivateKey.generate())
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "SignCertificateVerify": grpc.unary_unary_rpc_method_handler(
                fake.sign,
                request_deserializer=signer_pb2.SignCertificateVerifyRequest.FromString,
                response_serializer=signer_pb2.SignCertificateVerifyResponse.SerializeToString,
            ),
            "GetIdentity": grpc.unary_unary_rpc_method_handler(
                fake.identity,
                request_deserializer=signer_pb2.GetIdentityRequest.FromString,
                response_serializer=signer_pb2.GetIdentityResponse.SerializeToString,
            ),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    fake.target = f"127.0.0.1:{bound}"
    return fake, server


@pytest.fixture
def fake_signer(tls_material) -> Iterator[FakeSigner]:
    fake, server = start_fake_signer(tls_material)
    try:
        yield fake
    finally:
        server.stop(None)


@pytest.fixture
def late_signer(tls_material):
    """``start(port)`` starts a fake signer on that port later (a proxy still booting); stopped at the end."""
    servers: list[grpc.Server] = []

    def start(port: int) -> FakeSigner:
        fake, server = start_fake_signer(tls_material, port)
        servers.append(server)
        return fake

    yield start
    for server in servers:
        server.stop(None)


@pytest.fixture
def closed_port() -> int:
    """A loopback TCP port with nothing listening."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def step() -> type[Step]:
    """The Step class (test modules cannot import this conftest by name: the repo root has one too)."""
    return Step


@pytest.fixture
def other_ca() -> bytes:
    return make_tls()[0]
