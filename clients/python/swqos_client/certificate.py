"""The client certificate a Solana leader expects: Agave's fixed 249-byte X.509 template.

Agave (``new_dummy_x509_certificate``) and therefore every Solana client presents the same DER
bytes except for the 32-byte Ed25519 public key at offset 100; Firedancer leaders accept nothing
else. The signature field is 64 x 0xFF on purpose: leaders check only the TLS CertificateVerify,
never the certificate's own signature, so no key ever signs this certificate.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# Fixed DER prefix: SEQUENCE(246) { tbsCertificate SEQUENCE(169) { [0] v3, serial 01x8, alg Ed25519,
# issuer CN="Solana node", validity 1970-01-01 .. 4096-01-01, empty subject, SPKI { Ed25519, BIT STRING(33) 00 ...
_HEAD = bytes.fromhex(
    "3081f63081a9a00302010202080101010101010101300506032b6570"
    "30163114301206035504030c0b536f6c616e61206e6f6465"
    "3020170d3730303130313030303030305a180f34303936303130313030303030305a"
    "3000"
    "302a300506032b6570032100"
)
# Fixed DER suffix after the key: extensions [3] { SAN (critical) DNS "localhost", basicConstraints
# (critical, empty) }, then signatureAlgorithm Ed25519 and a 64-byte signature BIT STRING header.
_TAIL = bytes.fromhex(
    "a32930273017"
    "0603551d11"
    "0101ff"
    "040d300b82096c6f63616c686f7374"
    "300c0603551d130101ff04023000"
    "300506032b6570"
    "034100"
)
_SIGNATURE = b"\xff" * 64

PUBLIC_KEY_OFFSET = len(_HEAD)  # 100
CERTIFICATE_LENGTH = len(_HEAD) + 32 + len(_TAIL) + len(_SIGNATURE)  # 249

if PUBLIC_KEY_OFFSET != 100 or CERTIFICATE_LENGTH != 249:  # the template is a fixed fact; guard typos
    raise RuntimeError("Agave certificate template is malformed")


def _raw_public_key(public_key: bytes | Ed25519PublicKey) -> bytes:
    if isinstance(public_key, Ed25519PublicKey):
        return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw = bytes(public_key)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return raw


def client_certificate_der(public_key: bytes | Ed25519PublicKey) -> bytes:
    """The 249 DER bytes of Agave's client certificate for ``public_key``."""
    return _HEAD + _raw_public_key(public_key) + _TAIL + _SIGNATURE


def client_certificate(public_key: bytes | Ed25519PublicKey) -> x509.Certificate:
    """The same certificate as a ``cryptography`` object (what aioquic wants).

    ``cryptography`` keeps the original DER, so ``public_bytes(DER)`` returns exactly the template.
    """
    return x509.load_der_x509_certificate(client_certificate_der(public_key))


def public_key_from_certificate_der(der: bytes) -> bytes | None:
    """The public key if ``der`` is the template byte for byte apart from the key (Firedancer's rule), else None."""
    if len(der) != CERTIFICATE_LENGTH:
        return None
    if der[:PUBLIC_KEY_OFFSET] != _HEAD or der[PUBLIC_KEY_OFFSET + 32 :] != _TAIL + _SIGNATURE:
        return None
    return der[PUBLIC_KEY_OFFSET : PUBLIC_KEY_OFFSET + 32]
