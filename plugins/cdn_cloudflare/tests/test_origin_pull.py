"""Authenticated Origin Pulls through real mutual TLS: `[proxy] client_ca` makes the TLS layer
require a client certificate; `require_origin_pull_cert` + `origin_pull_ca` make the resolver
accept only the one issued for *this* zone, even when TLS trusts more than one CA."""

import datetime as dt

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swqos_proto import SIGN_METHOD, signer_pb2
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_client(ca_key, ca_cert, cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), cert.public_bytes(serialization.Encoding.PEM))


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def cas(tmp_path):
    zone, other = make_ca("our zone origin pull CA"), make_ca("another CA the TLS layer trusts")
    (tmp_path / "client_ca.pem").write_bytes(pem(zone[1]) + pem(other[1]))
    (tmp_path / "zone_ca.pem").write_bytes(pem(zone[1]))
    return zone, other


async def sign_with(stack, client):
    key, cert = client if client else (None, None)
    creds = grpc.ssl_channel_credentials(root_certificates=stack.ca_pem, private_key=key, certificate_chain=cert)
    async with grpc.aio.secure_channel(stack.target, creds,
                                       options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
        rpc = channel.unary_unary(SIGN_METHOD, request_serializer=signer_pb2.SignCertificateVerifyRequest.SerializeToString,
                                  response_deserializer=signer_pb2.SignCertificateVerifyResponse.FromString)
        try:
            await rpc(signer_pb2.SignCertificateVerifyRequest(payload=valid_cv()), timeout=5,
                      metadata=[("authorization", f"Bearer {stack.token()}"), ("cf-connecting-ip", "81.2.69.7")])
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


async def test_only_the_zone_certificate_passes(tmp_path, cas):
    zone, other = cas
    proxy = {
        "swqos": {"plugins": ["auth_jwt", "cdn_cloudflare"]},
        "proxy": {"client_ca": str(tmp_path / "client_ca.pem")},
        "pipeline": {"client_ip": ["cloudflare"]},
        "layers": {"client_ip": {"cloudflare": {
            "extra_trusted_ranges": ["127.0.0.0/8"],
            "require_origin_pull_cert": True,
            "origin_pull_ca": str(tmp_path / "zone_ca.pem"),
        }}},
    }
    async with running_stack(tmp_path, proxy=proxy) as stack:
        assert await sign_with(stack, make_client(*zone, "cloudflare origin pull")) is grpc.StatusCode.OK
        assert await stack.signatures_made() == 1
        # Trusted by TLS, but not this zone's origin-pull CA: another Cloudflare customer, say.
        assert await sign_with(stack, make_client(*other, "someone else")) is grpc.StatusCode.PERMISSION_DENIED
        # No client certificate at all: the TLS handshake itself fails.
        assert await sign_with(stack, None) is grpc.StatusCode.UNAVAILABLE
        assert await stack.signatures_made() == 1
