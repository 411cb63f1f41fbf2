"""The client certificate must be Agave's 249-byte template byte for byte (Firedancer accepts nothing else)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID, NameOID

from swqos_client import CERTIFICATE_LENGTH, client_certificate, client_certificate_der
from swqos_client.certificate import public_key_from_certificate_der

# The full DER for public key 00 01 02 .. 1f, written out independently of the builder.
PINNED_KEY = bytes(range(32))
PINNED_DER = bytes.fromhex(
    "3081f63081a9a00302010202080101010101010101300506032b657030163114301206035504030c0b536f6c616e6120"
    "6e6f64653020170d3730303130313030303030305a180f34303936303130313030303030305a3000302a300506032b65"
    "70032100000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fa329302730170603551d1101"
    "01ff040d300b82096c6f63616c686f7374300c0603551d130101ff04023000300506032b6570034100ffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffff"
)


def test_pinned_bytes() -> None:
    assert len(PINNED_DER) == 249
    assert client_certificate_der(PINNED_KEY) == PINNED_DER
    assert CERTIFICATE_LENGTH == 249


def test_only_the_key_varies() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    der = client_certificate_der(key)
    assert len(der) == 249
    assert der[:100] == PINNED_DER[:100]
    assert der[100:132] == raw
    assert der[132:] == PINNED_DER[132:]
    assert public_key_from_certificate_der(der) == raw


def test_cryptography_object_round_trips_exact_bytes_and_fields() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    cert = client_certificate(key)
    # aioquic sends public_bytes(DER): it must be the template, not a re-encoding.
    assert cert.public_bytes(Encoding.DER) == client_certificate_der(key)
    assert cert.version == x509.Version.v3
    assert cert.serial_number == 0x0101010101010101
    assert cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Solana node"
    assert len(cert.subject) == 0
    assert cert.not_valid_before_utc == datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    assert cert.not_valid_after_utc == datetime.datetime(4096, 1, 1, tzinfo=datetime.UTC)
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert san.critical and san.value.get_values_for_type(x509.DNSName) == ["localhost"]
    bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and bc.value.ca is False
    assert cert.signature == b"\xff" * 64
    pk = cert.public_key()
    assert isinstance(pk, Ed25519PublicKey) and pk == key


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33)])
def test_wrong_key_length_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        client_certificate_der(bad)


def test_template_check_rejects_any_other_byte() -> None:
    der = bytearray(client_certificate_der(PINNED_KEY))
    der[50] ^= 1
    assert public_key_from_certificate_der(bytes(der)) is None
    assert public_key_from_certificate_der(PINNED_DER[:-1]) is None
