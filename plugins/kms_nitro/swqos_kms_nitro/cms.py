"""KMS ``CiphertextForRecipient``: CMS EnvelopedData, parsed strictly and opened.

KMS answers a Decrypt that carries ``Recipient`` with a BER (indefinite-length) ContentInfo
holding EnvelopedData version 2: one KeyTransRecipientInfo (version 2, subjectKeyIdentifier),
RSAES-OAEP with SHA-256 and MGF1-SHA-256 wrapping a 32-byte AES key, and AES-256-CBC content with
PKCS#7 padding, the encryptedContent split into chunks or not.

Exactly that shape is accepted. Anything else (two recipients, PKCS#1 v1.5 key transport, OAEP
with SHA-1 defaults, another content cipher, a label, trailing bytes) is refused. CBC is not
authenticated, so every failure raises the same :class:`EnvelopeError`; failures after the
private key is used all carry one identical message so nothing can be learned from them.

:func:`build_envelope` writes the same byte layout; the fake KMS uses it, and tests use its
options to make the malformed variants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from asn1crypto import cms as asn1_cms
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: KMS caps CiphertextForRecipient at 6144 bytes.
MAX_ENVELOPE_BYTES = 6144
DECRYPT_FAILED = "decryption failed"


class EnvelopeError(Exception):
    """The envelope could not be opened. Structural reasons name the part; cryptographic failures
    (wrong key, bad padding, wrong length) all say ``decryption failed``."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"CiphertextForRecipient refused: {detail}")


@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of a checked envelope."""

    recipient_ski: bytes
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes


def parse_envelope(blob: bytes) -> Envelope:
    """Parse and check the structure; raise :class:`EnvelopeError` for anything unexpected."""
    try:
        return _parse(blob)
    except EnvelopeError:
        raise
    except Exception:  # asn1crypto raises many types on malformed input; all mean the same here
        raise EnvelopeError("malformed CMS structure") from None


def _parse(blob: bytes) -> Envelope:
    if not isinstance(blob, bytes | bytearray) or not 0 < len(blob) <= MAX_ENVELOPE_BYTES:
        raise EnvelopeError("empty or larger than 6144 bytes")
    # strict=True refuses bytes after the ContentInfo (trailing garbage).
    try:
        ci = asn1_cms.ContentInfo.load(bytes(blob), strict=True)
    except ValueError as exc:
        if "trailing" in str(exc):
            raise EnvelopeError("trailing bytes after the ContentInfo") from None
        raise
    if ci["content_type"].native != "enveloped_data":
        raise EnvelopeError("content type is not envelopedData")
    ed = ci["content"]
    if ed["version"].native != "v2":
        raise EnvelopeError("EnvelopedData version is not 2")
    if ed["originator_info"].native is not None or ed["unprotected_attrs"].native is not None:
        raise EnvelopeError("unexpected originatorInfo or unprotectedAttrs")
    recipients = ed["recipient_infos"]
    if len(recipients) != 1:
        raise EnvelopeError(f"{len(recipients)} recipients, expected exactly one")
    ri = recipients[0]
    if ri.name != "ktri":
        raise EnvelopeError("recipient is not a KeyTransRecipientInfo")
    ktri = ri.chosen
    if ktri["version"].native != "v2":
        raise EnvelopeError("KeyTransRecipientInfo version is not 2")
    if ktri["rid"].name != "subject_key_identifier":
        raise EnvelopeError("recipient is not identified by subjectKeyIdentifier")
    ski = ktri["rid"].chosen.native
    kea = ktri["key_encryption_algorithm"]
    if kea["algorithm"].native != "rsaes_oaep":
        raise EnvelopeError(f"key transport is {kea['algorithm'].native}, expected rsaes_oaep")
    params = kea["parameters"]
    # Absent parameters mean SHA-1 defaults: refuse, KMS always writes them out.
    if params.native is None or params.contents is None or not params.contents:
        raise EnvelopeError("RSAES-OAEP parameters are absent (SHA-1 defaults)")
    if params["hash_algorithm"]["algorithm"].native != "sha256":
        raise EnvelopeError("OAEP hash is not SHA-256")
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1" or mgf["parameters"]["algorithm"].native != "sha256":
        raise EnvelopeError("OAEP mask generation is not MGF1-SHA-256")
    psrc = params["p_source_algorithm"]
    if psrc["algorithm"].native != "p_specified" or psrc["parameters"].native not in (b"", None):
        raise EnvelopeError("OAEP label is not empty")
    encrypted_key = ktri["encrypted_key"].native
    if len(encrypted_key) != 256:
        raise EnvelopeError("encrypted key is not 256 bytes (RSA-2048)")
    eci = ed["encrypted_content_info"]
    if eci["content_type"].native != "data":
        raise EnvelopeError("encrypted content type is not data")
    cea = eci["content_encryption_algorithm"]
    if cea["algorithm"].native != "aes256_cbc":
        raise EnvelopeError(f"content cipher is {cea['algorithm'].native}, expected aes256_cbc")
    iv = cea["parameters"].native
    if not isinstance(iv, bytes) or len(iv) != 16:
        raise EnvelopeError("AES-CBC IV is not 16 bytes")
    ciphertext = eci["encrypted_content"].native
    if not isinstance(ciphertext, bytes) or not ciphertext or len(ciphertext) % 16:
        raise EnvelopeError("encrypted content is empty or not a whole number of AES blocks")
    return Envelope(bytes(ski), bytes(encrypted_key), bytes(iv), bytes(ciphertext))


def open_envelope(blob: bytes, private_key: rsa.RSAPrivateKey) -> bytearray:
    """Parse, unwrap the content key with ``private_key`` and decrypt; return the plaintext."""
    env = parse_envelope(blob)
    cek = b""
    try:
        cek = private_key.decrypt(
            env.encrypted_key,
            asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        if len(cek) != 32:
            raise ValueError
        decryptor = Cipher(algorithms.AES(cek), modes.CBC(env.iv)).decryptor()
        padded = decryptor.update(env.ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plain = bytearray(unpadder.update(padded) + unpadder.finalize())
    except Exception:  # one answer for every cryptographic failure (no padding oracle)
        raise EnvelopeError(DECRYPT_FAILED) from None
    finally:
        del cek
    return plain


# --- writing (fake KMS and tests) ----------------------------------------------------------

_OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_RSAES_OAEP = "1.2.840.113549.1.1.7"
_OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_OID_MGF1 = "1.2.840.113549.1.1.8"
_OID_SHA256 = "2.16.840.1.101.3.4.2.1"
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"
_OID_AES128_CBC = "2.16.840.1.101.3.4.1.2"


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def _indef(tag: int, *parts: bytes) -> bytes:
    """A constructed value with indefinite length, as KMS writes its outer layers."""
    return bytes([tag, 0x80]) + b"".join(parts) + b"\x00\x00"


def _oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    body = bytearray([40 * nums[0] + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big"))


_NULL = b"\x05\x00"


def _ktri(public_key: rsa.RSAPublicKey, cek: bytes, ski: bytes, key_transport: str) -> bytes:
    if key_transport == "oaep":
        alg = _tlv(0x30, _oid(_OID_RSAES_OAEP) + _tlv(0x30,
            _tlv(0xA0, _tlv(0x30, _oid(_OID_SHA256) + _NULL))
            + _tlv(0xA1, _tlv(0x30, _oid(_OID_MGF1) + _tlv(0x30, _oid(_OID_SHA256) + _NULL)))))
        wrapped = public_key.encrypt(
            cek, asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        )
    elif key_transport == "oaep_sha1_defaults":
        alg = _tlv(0x30, _oid(_OID_RSAES_OAEP) + _tlv(0x30, b""))
        wrapped = public_key.encrypt(
            cek, asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
        )
    elif key_transport == "pkcs1v15":
        alg = _tlv(0x30, _oid(_OID_RSA_ENCRYPTION) + _NULL)
        wrapped = public_key.encrypt(cek, asym_padding.PKCS1v15())
    else:
        raise ValueError(key_transport)
    return _tlv(0x30, _int(2) + _tlv(0x80, ski) + alg + _tlv(0x04, wrapped))


def build_envelope(
    plaintext: bytes,
    public_key: rsa.RSAPublicKey,
    *,
    ski: bytes | None = None,
    key_transport: Literal["oaep", "pkcs1v15", "oaep_sha1_defaults"] = "oaep",
    content_cipher: Literal["aes256_cbc", "aes128_cbc"] = "aes256_cbc",
    recipients: int = 1,
    chunk: int | None = 1024,
    corrupt_padding: bool = False,
    version: int = 2,
) -> bytes:
    """Encrypt ``plaintext`` to ``public_key`` in KMS's CiphertextForRecipient layout.

    The defaults give exactly what KMS sends; the other options make the malformed variants the
    tests need (and that a parent instance forging an envelope might try).
    """
    key_len = 32 if content_cipher == "aes256_cbc" else 16
    cek, iv = os.urandom(key_len), os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    if corrupt_padding:
        padded = padded[:-1] + bytes([0])  # a last byte of 0 is never valid PKCS#7
    enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(padded) + enc.finalize()
    ski = ski if ski is not None else os.urandom(32)
    ktris = b"".join(_ktri(public_key, cek, ski, key_transport) for _ in range(recipients))
    cipher_oid = _OID_AES256_CBC if content_cipher == "aes256_cbc" else _OID_AES128_CBC
    if chunk:
        content = _indef(0xA0, *(_tlv(0x04, ciphertext[i:i + chunk]) for i in range(0, len(ciphertext), chunk)))
    else:
        content = _tlv(0x80, ciphertext)
    eci = _indef(0x30, _oid(_OID_DATA), _tlv(0x30, _oid(cipher_oid) + _tlv(0x04, iv)), content)
    enveloped = _indef(0x30, _int(version), _tlv(0x31, ktris), eci)
    return _indef(0x30, _oid(_OID_ENVELOPED_DATA), _indef(0xA0, enveloped))
