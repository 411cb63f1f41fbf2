"""RemoteEd25519PrivateKey: passes aioquic's isinstance check, refuses anything but a client CV locally."""

from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import given
from hypothesis import strategies as st

from swqos_client import (
    BadResponse,
    LocalRefusal,
    PrivateKeyUnavailable,
    RemoteEd25519PrivateKey,
    SignerClient,
    TlsTrust,
    check_client_certificate_verify,
    make_client_certificate_verify,
)
from swqos_client.payload import CLIENT_CV_PREFIX, SERVER_CV_PREFIX

CV130 = make_client_certificate_verify(bytes(range(32)))
CV146 = make_client_certificate_verify(bytes(range(48)))


def test_accepts_both_sizes() -> None:
    assert len(CV130) == 130 and len(CV146) == 146
    assert check_client_certificate_verify(CV130) == CV130
    assert check_client_certificate_verify(bytearray(CV146)) == CV146


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"", "length"),
        (CV130[:-1], "length"),
        (CV130 + b"\x00" * 32, "length"),  # 162: Firedancer's permissive size, not a client CV here
        (SERVER_CV_PREFIX + bytes(32), "server context"),
        (b"\x20" * 64 + b"Firedancer event challenge-respo" + b"\x00" + bytes(33), "prefix"),
        (b"\x01" + bytes(129), "prefix"),  # looks like a legacy transaction with one signature
        (b"\x80" + bytes(145), "prefix"),  # v0 message
    ],
)
def test_refuses_everything_else(payload: bytes, why: str) -> None:
    with pytest.raises(LocalRefusal, match=why):
        check_client_certificate_verify(payload)


@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_refused_unless_cv(data: bytes) -> None:
    is_cv = len(data) in (130, 146) and data.startswith(CLIENT_CV_PREFIX)
    if is_cv:
        assert check_client_certificate_verify(data) == data
    else:
        with pytest.raises(LocalRefusal):
            check_client_certificate_verify(data)


def test_is_an_ed25519_private_key_for_aioquic() -> None:
    client = SignerClient("127.0.0.1:9", token="t")
    key = RemoteEd25519PrivateKey(client, public_key=bytes(32))
    try:
        assert isinstance(key, Ed25519PrivateKey)
        with pytest.raises(PrivateKeyUnavailable):
            key.private_bytes_raw()
        with pytest.raises(PrivateKeyUnavailable):
            key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        assert copy.deepcopy(key) is key
        with pytest.raises(TypeError):
            import pickle

            pickle.dumps(key)
    finally:
        client.close()


def test_non_cv_refused_before_any_network_call(fake_signer) -> None:
    client = SignerClient(fake_signer.target, token="t", trust=TlsTrust(ca_pem=fake_signer.ca_pem))
    key = RemoteEd25519PrivateKey(client, public_key=fake_signer.public_key)
    try:
        for bad in (b"\x01" + bytes(200), SERVER_CV_PREFIX + bytes(32), b"hello"):
            with pytest.raises(LocalRefusal):
                key.sign(bad)
            with pytest.raises(LocalRefusal):
                client.sign_certificate_verify(bad)
        assert fake_signer.seen == []
        assert fake_signer.signatures == 0
        # and the same key signs a real CV remotely, verifiably
        sig = key.sign(CV146)
        fake_signer.key.public_key().verify(sig, CV146)
        assert key.signatures == 1 and fake_signer.signatures == 1
    finally:
        client.close()


def test_public_key_fetched_via_get_identity(fake_signer) -> None:
    client = SignerClient(fake_signer.target, token="t", trust=TlsTrust(ca_pem=fake_signer.ca_pem))
    try:
        key = RemoteEd25519PrivateKey(client)
        assert key.public_key_bytes() == fake_signer.public_key
        assert [s.method for s in fake_signer.seen] == ["identity"]
    finally:
        client.close()


def test_pinned_identity_mismatch_refused(fake_signer) -> None:
    client = SignerClient(fake_signer.target, token="t", trust=TlsTrust(ca_pem=fake_signer.ca_pem))
    other = Ed25519PrivateKey.generate().public_key()
    try:
        key = RemoteEd25519PrivateKey(client, public_key=other)
        with pytest.raises(BadResponse, match="different validator identity"):
            key.check_identity()
        # a signature by the proxy's (other) key does not verify against the pinned key: refused
        with pytest.raises(BadResponse, match="does not verify"):
            key.sign(CV130)
        assert key.signatures == 0
    finally:
        client.close()
