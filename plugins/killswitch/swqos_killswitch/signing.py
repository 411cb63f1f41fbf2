"""Detached ECDSA P-256 / SHA-256 signatures in the format ``cosign sign-blob --key`` writes.

The signature is the standard base64 of an ASN.1 DER ``ECDSA-Sig-Value`` over SHA-256 of the
exact bytes of the blob (no envelope, no canonicalisation). The public key is a PEM
SubjectPublicKeyInfo (``cosign.pub``); its id is the hex SHA-256 of the DER SPKI. A cosign v3
"new bundle" (``--bundle``) is accepted too: only its ``messageSignature`` is used, and any key
material inside it is ignored, because the key is always the one pinned in config.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from swqos_core.files import write_private_file  # noqa: F401  (re-exported for the CLI)

#: Largest signature file read: a DER P-256 signature is ~72 bytes, a bundle a few KiB.
MAX_SIGNATURE_BYTES = 16 * 1024


class SignatureError(Exception):
    """The signature is missing, malformed, or does not verify. ``label`` is a short metric label."""

    def __init__(self, message: str, label: str = "bad_signature") -> None:
        super().__init__(message)
        self.label = label


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo (what config pins next to the key)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """Load a PEM SPKI public key; only ECDSA P-256 is accepted (cosign's default)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("the public key must be ECDSA P-256 (cosign generate-key-pair)")
    return key


@dataclass(frozen=True)
class PinnedKey:
    """The one key a verifier trusts, and its id, both from config."""

    key: ec.EllipticCurvePublicKey
    key_id: str

    @classmethod
    def from_file(cls, path: Path, expected_key_id: str | None) -> PinnedKey:
        """Load ``path``; when ``expected_key_id`` is given the key must have that id.

        Pinning the id next to the path means a key file swapped on disk is a startup error,
        not a silent change of who may halt (or resume) the fleet.
        """
        key = load_public_key(Path(path).read_bytes())
        kid = key_id(key)
        if expected_key_id is not None:
            want = expected_key_id.strip().lower()
            if not hmac.compare_digest(kid, want):
                raise ValueError(f"public key {path} has key id {kid}, but config pins {want}")
        return cls(key, kid)


def sign_blob(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Return the cosign-format signature (base64 DER, ASCII, no newline) of ``data``."""
    if private_key.curve.name != "secp256r1":
        raise ValueError("the signing key must be ECDSA P-256")
    der = private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der)


def decode_signature(sig_file: bytes, data: bytes) -> bytes:
    """Return the DER signature held by a signature file (base64, or a sigstore bundle).

    Raises :class:`SignatureError` for anything else.
    """
    if len(sig_file) > MAX_SIGNATURE_BYTES:
        raise SignatureError("signature file is too large", "signature_oversize")
    text = sig_file.strip()
    if text.startswith(b"{"):
        return _signature_from_bundle(text, data)
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("signature is not base64", "malformed_signature") from None
    if not 8 <= len(der) <= 80 or der[0] != 0x30:
        raise SignatureError("signature is not a DER ECDSA signature", "malformed_signature")
    return der


def _signature_from_bundle(text: bytes, data: bytes) -> bytes:
    try:
        bundle = json.loads(text)
        msg = bundle["messageSignature"]
        sig_b64 = msg["signature"]
        digest = msg.get("messageDigest")
    except (ValueError, KeyError, TypeError):
        raise SignatureError("signature bundle has no messageSignature", "malformed_signature") from None
    if not isinstance(sig_b64, str):
        raise SignatureError("signature bundle has no messageSignature", "malformed_signature")
    if digest is not None:
        # The digest is informative only (we hash the bytes ourselves), but a bundle naming
        # other bytes is certainly not for this document.
        try:
            ok = digest.get("algorithm") == "SHA2_256" and hmac.compare_digest(
                base64.b64decode(digest.get("digest", ""), validate=True), hashlib.sha256(data).digest()
            )
        except (AttributeError, binascii.Error, ValueError, TypeError):
            ok = False
        if not ok:
            raise SignatureError("signature bundle is for different bytes", "bad_signature")
    return decode_signature(sig_b64.encode(), data)


def verify_blob(pinned: PinnedKey, data: bytes, sig_file: bytes) -> None:
    """Raise :class:`SignatureError` unless ``sig_file`` is ``pinned``'s signature over ``data``."""
    der = decode_signature(sig_file, data)
    try:
        pinned.key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("signature does not verify with the pinned key", "bad_signature") from None


# --- key files (for `swqos manifest keygen` / `sign`) --------------------------------------


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def public_key_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PKCS#8 PEM P-256 private key. cosign's encrypted SIGSTORE key format is not
    readable here: sign with ``cosign sign-blob`` instead when the key lives in cosign."""
    data = Path(path).read_bytes()
    if b"SIGSTORE PRIVATE KEY" in data or b"COSIGN PRIVATE KEY" in data:
        raise ValueError(f"{path} is a cosign-encrypted key; sign with `cosign sign-blob --key {path}` instead")
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot load private key {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path} is not an ECDSA P-256 private key")
    return key
