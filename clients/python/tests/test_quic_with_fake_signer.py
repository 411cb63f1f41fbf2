"""A real aioquic handshake whose client CertificateVerify is signed by a (fake, in-process) gRPC signer.

The end-to-end version through the real host-proxy and enclave lives in tests/quic/.
"""

from __future__ import annotations

import grpc
import pytest

pytest.importorskip("aioquic")

from swqos_client import PermissionDenied, RemoteEd25519PrivateKey, SignerClient, TlsTrust
from swqos_client.quic import SHA256_SUITES, SHA384_SUITES, HandshakeFailed, connect_as_validator
from swqos_client.testing_tpu import StandInTpu


@pytest.mark.parametrize(("suites", "size"), [(SHA256_SUITES, 130), (SHA384_SUITES, 146)])
async def test_handshake_as_validator(fake_signer, suites, size) -> None:
    client = SignerClient(fake_signer.target, token="t", trust=TlsTrust(ca_pem=fake_signer.ca_pem))
    key = RemoteEd25519PrivateKey(client, public_key=fake_signer.public_key)
    try:
        async with StandInTpu() as tpu:
            async with connect_as_validator(tpu.host, tpu.port, key, cipher_suites=suites) as conn:
                assert conn.handshake.payload_size == size
                first = conn.send(b"transaction ")
                second = conn.send(b"bytes")
                assert first != second  # one new stream per send
                rec = await tpu.wait_for(lambda r: r.data == b"transaction bytes")
                assert rec.streams == {first: b"transaction ", second: b"bytes"}
        assert rec.accepted and rec.public_key == fake_signer.public_key
        assert rec.matches_agave_template
        assert fake_signer.signatures == 1
        assert len(fake_signer.seen[0].payload) == size
    finally:
        client.close()


async def test_send_after_close_is_refused(fake_signer) -> None:
    client = SignerClient(fake_signer.target, token="t", trust=TlsTrust(ca_pem=fake_signer.ca_pem))
    key = RemoteEd25519PrivateKey(client, public_key=fake_signer.public_key_base58)
    try:
        async with StandInTpu() as tpu:
            async with connect_as_validator(tpu.host, tpu.port, key) as conn:
                conn.close()
                await conn.wait_closed()
                with pytest.raises(ConnectionError):
                    conn.send(b"too late")
            assert all(not r.streams for r in tpu.peers)
    finally:
        client.close()


async def test_refusal_aborts_handshake_with_typed_cause(fake_signer, step) -> None:
    fake_signer.script = [step(grpc.StatusCode.PERMISSION_DENIED, "trader revoked")]
    client = SignerClient(fake_signer.target, token="t", trust=TlsTrust(ca_pem=fake_signer.ca_pem))
    key = RemoteEd25519PrivateKey(client, public_key=fake_signer.public_key)
    try:
        async with StandInTpu() as tpu:
            with pytest.raises(HandshakeFailed) as info:
                async with connect_as_validator(tpu.host, tpu.port, key):
                    pass
            assert not any(r.accepted for r in tpu.peers)
        assert isinstance(info.value.__cause__, PermissionDenied)
        assert info.value.__cause__.reason == "trader revoked"
        assert fake_signer.signatures == 0 and key.signatures == 0
    finally:
        client.close()


async def test_stand_in_refuses_a_client_without_certificate() -> None:
    """The stand-in must really require a client certificate (otherwise the E2E tests prove nothing)."""
    import ssl

    from aioquic.asyncio import connect
    from aioquic.quic.configuration import QuicConfiguration

    async with StandInTpu() as tpu:
        cfg = QuicConfiguration(is_client=True, alpn_protocols=["solana-tpu"], verify_mode=ssl.CERT_NONE)
        try:
            async with connect(tpu.host, tpu.port, configuration=cfg) as conn:
                await conn.wait_closed()
        except ConnectionError:
            pass
        rec = await tpu.wait_for(lambda r: r.refusal is not None)
    assert rec.refusal == "client certificate required" and not rec.accepted


async def test_stand_in_refuses_a_non_template_certificate(tmp_path) -> None:
    """A valid Ed25519 key in an ordinary self-signed certificate is refused (Firedancer's rule)."""
    import datetime
    import ssl

    from aioquic.asyncio import connect
    from aioquic.quic.configuration import QuicConfiguration
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    k = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(k, None)
    )
    async with StandInTpu() as tpu:
        cfg = QuicConfiguration(is_client=True, alpn_protocols=["solana-tpu"], verify_mode=ssl.CERT_NONE)
        cfg.certificate, cfg.private_key = cert, k
        try:
            async with connect(tpu.host, tpu.port, configuration=cfg) as conn:
                await conn.wait_closed()
        except ConnectionError:
            pass
        rec = await tpu.wait_for(lambda r: r.refusal is not None)
    assert rec.refusal == "client certificate is not the Agave template"
