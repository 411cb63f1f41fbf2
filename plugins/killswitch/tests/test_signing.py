"""cosign-compatible detached signatures: base64 DER ECDSA P-256 over SHA-256 of the exact bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils

from swqos_killswitch.signing import (
    PinnedKey,
    SignatureError,
    key_id,
    load_private_key,
    load_public_key,
    private_key_pem,
    sign_blob,
    verify_blob,
)

VECTORS = Path(__file__).parent / "vectors"
BLOB = b'{"_type": "anything", "version": 1}\n'


def pinned(keys) -> PinnedKey:
    return PinnedKey.from_file(keys.pub_path, keys.key_id)


def test_signature_is_base64_der_over_sha256_of_exact_bytes(keys):
    sig = sign_blob(keys.private, BLOB)
    der = base64.b64decode(sig, validate=True)
    assert der[0] == 0x30  # ASN.1 SEQUENCE: ECDSA-Sig-Value {r, s}
    r, s = utils.decode_dss_signature(der)
    assert r > 0 and s > 0
    # Verify independently of our code, the way cosign verify-blob does: over the SHA-256 digest.
    keys.private.public_key().verify(der, hashlib.sha256(BLOB).digest(), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    verify_blob(pinned(keys), BLOB, sig)


def test_accepts_a_signature_made_elsewhere_over_the_digest(keys):
    # What cosign does: ecdsa.SignASN1(priv, sha256(blob)); here made with cryptography directly.
    der = keys.private.sign(hashlib.sha256(BLOB).digest(), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    verify_blob(pinned(keys), BLOB, base64.b64encode(der) + b"\n")  # cosign prints a trailing newline


def test_go_produced_vector():
    key = load_public_key((VECTORS / "sigstore-go-public-key.pem").read_bytes())
    pin = PinnedKey(key, key_id(key))
    pae = b"DSSEv1 10 text/plain 13 hello, world!"
    sig = b"MEUCICUhAVewfwKlk5fVzpRDUPhEw9O8I2pxC5nTnPfYDBsOAiEA0ZFqs99QgR9mAtFMWtWrOjmUC47zgaoolKIoLH/OwdM="
    verify_blob(pin, pae, sig)
    with pytest.raises(SignatureError):
        verify_blob(pin, pae.replace(b"hello", b"jello"), sig)


def test_key_id_is_hex_sha256_of_der_spki(keys):
    der = keys.private.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    assert keys.key_id == hashlib.sha256(der).hexdigest()
    assert PinnedKey.from_file(keys.pub_path, keys.key_id.upper()).key_id == keys.key_id


def test_pinned_key_id_mismatch_is_refused(keys, other_keys):
    with pytest.raises(ValueError, match="key id"):
        PinnedKey.from_file(keys.pub_path, other_keys.key_id)


def test_only_p256_keys(tmp_path):
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    for key in (p384, ed):
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(ValueError, match="P-256"):
            load_public_key(pem)


def test_signature_by_another_key(keys, other_keys):
    with pytest.raises(SignatureError) as exc:
        verify_blob(pinned(keys), BLOB, sign_blob(other_keys.private, BLOB))
    assert exc.value.label == "bad_signature"


def test_signature_over_different_bytes(keys):
    sig = sign_blob(keys.private, BLOB)
    for other in (BLOB + b" ", BLOB.rstrip(b"\n"), BLOB.replace(b"1", b"2")):
        with pytest.raises(SignatureError):
            verify_blob(pinned(keys), other, sig)


@pytest.mark.parametrize("sig", [b"", b"not base64!!", b"<html>oops</html>", base64.b64encode(b"\x01" * 70),
                                 b"A" * 20000])
def test_malformed_signatures(keys, sig):
    with pytest.raises(SignatureError) as exc:
        verify_blob(pinned(keys), BLOB, sig)
    assert exc.value.label in {"malformed_signature", "signature_oversize"}


def test_cosign_v3_bundle_message_signature(keys, other_keys):
    sig = sign_blob(keys.private, BLOB).decode()
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        # Key material in a bundle is ignored: the pinned key decides (GHSA-fx35-mq7g-6g98).
        "verificationMaterial": {"publicKey": {"hint": "whatever"}},
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256",
                              "digest": base64.b64encode(hashlib.sha256(BLOB).digest()).decode()},
            "signature": sig,
        },
    }
    verify_blob(pinned(keys), BLOB, json.dumps(bundle).encode())
    with pytest.raises(SignatureError):
        verify_blob(pinned(other_keys), BLOB, json.dumps(bundle).encode())
    bundle["messageSignature"]["messageDigest"]["digest"] = base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(SignatureError, match="different bytes"):
        verify_blob(pinned(keys), BLOB, json.dumps(bundle).encode())


def test_private_key_round_trip_with_password(tmp_path, keys):
    path = tmp_path / "k.pem"
    path.write_bytes(private_key_pem(keys.private, b"pw"))
    loaded = load_private_key(path, b"pw")
    verify_blob(pinned(keys), BLOB, sign_blob(loaded, BLOB))
    with pytest.raises(ValueError):
        load_private_key(path, b"wrong")


def test_cosign_encrypted_key_is_explained(tmp_path):
    path = tmp_path / "cosign.key"
    path.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n"
                    "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="cosign sign-blob"):
        load_private_key(path)
