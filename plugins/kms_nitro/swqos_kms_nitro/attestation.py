"""Verify AWS Nitro Enclaves attestation documents.

A document is a COSE_Sign1 (CBOR tag 18 optional; real NSM output is untagged) whose payload is
a CBOR map signed with ES384 (raw 96-byte r||s) by the ``certificate`` field, which chains through
``cabundle`` (``[ROOT, INTERM_1, ..., INTERM_N]``) to the AWS Nitro Enclaves root.

Trust comes only from a root pinned by its SHA-256 fingerprint. ``cabundle[0]`` must be that very
root (byte for byte) but is never trusted because it is present. Certificates are checked at the
document's own timestamp (archived documents) or at a given time (default: now, which is what a
live check wants; the leaf lives about three hours).

Every refusal raises :class:`AttestationError` with a reason naming the failed check.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

#: The AWS Nitro Enclaves root (G1), public data published by AWS. Pinned below by fingerprint.
AWS_NITRO_ROOT_PEM = b"""-----BEGIN CERTIFICATE-----
MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoMBkFtYXpvbjEMMAoGA1UECwwDQVdTMRswGQYD
VQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4
MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQL
DANBV1MxGzAZBgNVBAMMEmF3cy5uaXRyby1lbmNsYXZlczB2MBAGByqGSM49AgEG
BSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb
48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZE
h8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkF
R+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYC
MQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPW
rfMCMQCi85sWBbJwKKXdS6BptQFuZbT73o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6N
IwLz3/Y=
-----END CERTIFICATE-----
"""
#: SHA-256 of the DER root certificate, as published by AWS (verify-root page).
AWS_NITRO_ROOT_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

#: The NSM's own document buffer is 16 KiB; anything far larger is not an NSM document.
MAX_DOCUMENT_BYTES = 32 * 1024
MAX_PAYLOAD_BYTES = 16 * 1024
COSE_ALG_ES384 = -35
PROTECTED_ES384 = bytes.fromhex("a1013822")
#: Real NSM payload keys, in the order the NSM writes them.
PAYLOAD_KEYS = (
    "module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key", "user_data", "nonce",
)
MANDATORY_KEYS = frozenset(PAYLOAD_KEYS[:6])
#: ``user_data`` of a GetIdentity document: says that ``public_key`` is the validator identity key.
IDENTITY_USER_DATA = b"swqos/validator-identity/ed25519/v1"
PCR_LENGTHS = {"SHA256": 32, "SHA384": 48, "SHA512": 64}
#: Documents dated this far in the future (clock skew) are still accepted by the freshness check.
DEFAULT_FUTURE_SKEW = 300.0
_DER = Encoding.DER
_KNOWN_EXTENSIONS = {
    ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE, ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.CRL_DISTRIBUTION_POINTS,
}


class AttestationError(Exception):
    """An attestation document was refused; ``reason`` says which check failed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class AttestationDocument:
    """The checked content of a document."""

    module_id: str
    digest: str
    timestamp_ms: int
    pcrs: dict[int, bytes]
    certificate: x509.Certificate
    cabundle: tuple[x509.Certificate, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    raw: bytes = field(repr=False)

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def debug_mode(self) -> bool:
        return is_debug_pcrs(self.pcrs)

    def pcr_hex(self, index: int) -> str:
        return self.pcrs[index].hex()

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly view for the command line and logs."""
        return {
            "module_id": self.module_id,
            "timestamp_ms": self.timestamp_ms,
            "timestamp": self.timestamp.isoformat(),
            "digest": self.digest,
            "pcrs": {str(i): v.hex() for i, v in sorted(self.pcrs.items())},
            "public_key": None if self.public_key is None else self.public_key.hex(),
            "user_data": None if self.user_data is None else self.user_data.hex(),
            "nonce": None if self.nonce is None else self.nonce.hex(),
            "leaf_subject": self.certificate.subject.rfc4514_string(),
        }


def is_debug_pcrs(pcrs: Mapping[int, bytes]) -> bool:
    """Debug-mode enclaves report all-zero image measurements (PCR0, PCR1, PCR2)."""
    return any(i in pcrs and not any(pcrs[i]) for i in (0, 1, 2))


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(_DER)).hexdigest()


def load_root(pem_or_der: bytes, expected_sha256: str) -> x509.Certificate:
    """Load a trust anchor and insist that it is the one pinned by ``expected_sha256``."""
    try:
        cert = (x509.load_pem_x509_certificate(pem_or_der) if pem_or_der.lstrip().startswith(b"-----")
                else x509.load_der_x509_certificate(pem_or_der))
    except ValueError:
        raise AttestationError("root certificate is not a readable certificate") from None
    want = expected_sha256.replace(":", "").lower()
    if not hmac.compare_digest(fingerprint(cert), want):
        raise AttestationError("root certificate does not match the pinned SHA-256 fingerprint")
    return cert


def aws_root() -> x509.Certificate:
    return load_root(AWS_NITRO_ROOT_PEM, AWS_NITRO_ROOT_SHA256)


def _decode_exact(data: bytes, what: str) -> Any:
    """Decode one CBOR item and refuse trailing bytes (cbor2.loads alone would ignore them)."""
    fp = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(fp).decode()
    except Exception:  # every decoding failure is the same refusal
        raise AttestationError(f"{what} is not valid CBOR") from None
    if fp.tell() != len(data):
        raise AttestationError(f"{what} has trailing bytes after the CBOR item")
    return item


def _bytes_field(payload: dict[str, Any], key: str, low: int, high: int, *, optional: bool) -> bytes | None:
    value = payload.get(key)
    if value is None:
        if optional:
            return None
        raise AttestationError(f"payload field {key} is missing")
    if not isinstance(value, bytes):
        raise AttestationError(f"payload field {key} is not a byte string")
    if not low <= len(value) <= high:
        raise AttestationError(f"payload field {key} is {len(value)} bytes, allowed {low}..{high}")
    return value


def _load_cert(der: bytes, what: str) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise AttestationError(f"{what} is not a DER certificate") from None
    try:
        key = cert.public_key()
    except (ValueError, TypeError):
        raise AttestationError(f"{what} carries an unreadable public key") from None
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)):
        raise AttestationError(f"{what} does not carry a P-384 key")
    return cert


def _ext(cert: x509.Certificate, cls: type) -> Any:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def _check_cert(cert: x509.Certificate, what: str, when: datetime, *, ca: bool, below: int) -> None:
    """Validity at ``when``, no unknown critical extension, and the CA/leaf profile."""
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise AttestationError(
            f"{what} is not valid at {when.isoformat()} (valid {cert.not_valid_before_utc.isoformat()} "
            f"to {cert.not_valid_after_utc.isoformat()})"
        )
    for ext in cert.extensions:
        if ext.critical and ext.oid not in _KNOWN_EXTENSIONS:
            raise AttestationError(f"{what} has an unknown critical extension {ext.oid.dotted_string}")
    bc = _ext(cert, x509.BasicConstraints)
    ku = _ext(cert, x509.KeyUsage)
    if ca:
        if bc is None or not bc.ca:
            raise AttestationError(f"{what} is not a CA certificate (basicConstraints)")
        if bc.path_length is not None and below > bc.path_length:
            raise AttestationError(f"{what} path length constraint {bc.path_length} exceeded")
        if ku is None or not ku.key_cert_sign:
            raise AttestationError(f"{what} may not sign certificates (keyUsage)")
    else:
        if bc is not None and bc.ca:
            raise AttestationError(f"{what} is a CA certificate, expected an end-entity")
        if ku is None or not ku.digital_signature:
            raise AttestationError(f"{what} may not sign documents (keyUsage lacks digitalSignature)")
        if ku.key_cert_sign:
            raise AttestationError(f"{what} is an end-entity with keyCertSign")


def _verify_issued(child: x509.Certificate, parent: x509.Certificate, what: str) -> None:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        raise AttestationError(f"{what} is not signed by the next certificate in the chain") from None


def _resolve_time(at: datetime | Literal["document"] | None, timestamp_ms: int) -> datetime:
    if at == "document":
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    if at is None:
        return datetime.now(UTC)
    if isinstance(at, datetime):
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    raise AttestationError("invalid verification time")


def verify(document: bytes, **kwargs: Any) -> AttestationDocument:
    """Check ``document`` completely; return its content or raise :class:`AttestationError`.

    Keyword arguments are those of :func:`_verify`. Any unexpected exception while checking is a
    refusal too (fail closed), never a pass.
    """
    try:
        return _verify(document, **kwargs)
    except AttestationError:
        raise
    except Exception as exc:  # a checker bug or odd input must refuse, not pass
        raise AttestationError(f"document could not be checked ({type(exc).__name__})") from None


def _verify(
    document: bytes,
    *,
    root: x509.Certificate | None = None,
    at: datetime | Literal["document"] | None = None,
    max_age: float | None = None,
    future_skew: float = DEFAULT_FUTURE_SKEW,
    expected_pcrs: Mapping[int, bytes | Iterable[bytes]] | None = None,
    nonce: bytes | None = None,
    public_key: bytes | None = None,
    user_data: bytes | None = None,
    allow_debug: bool = False,
) -> AttestationDocument:
    """Check ``document`` completely; return its content or raise :class:`AttestationError`.

    ``root`` is the pinned trust anchor (default: the AWS root, checked against its fingerprint;
    tests pass the fake NSM's root). ``at`` is when certificates must be valid: ``None`` = now,
    ``"document"`` = the document's own timestamp, or a datetime. ``max_age`` bounds how old the
    document may be at that time. ``expected_pcrs`` maps an index to one value or a list of allowed
    values. ``nonce``/``public_key``/``user_data``, when given, must equal the document's fields.
    """
    if root is None:
        root = aws_root()
    if not isinstance(document, bytes | bytearray) or not 0 < len(document) <= MAX_DOCUMENT_BYTES:
        raise AttestationError("document is empty or too large")
    document = bytes(document)

    # --- COSE_Sign1 envelope -----------------------------------------------------------------
    outer = _decode_exact(document, "document")
    if isinstance(outer, cbor2.CBORTag):
        if outer.tag != 18:
            raise AttestationError(f"document has CBOR tag {outer.tag}, expected none or 18 (COSE_Sign1)")
        outer = outer.value
    # cbor2 hands out a tagged array as a tuple.
    if not (isinstance(outer, list | tuple) and len(outer) == 4):
        raise AttestationError("document is not a COSE_Sign1 array of four items")
    protected, unprotected, payload_bytes, signature = outer
    if not isinstance(protected, bytes) or not isinstance(payload_bytes, bytes) or not isinstance(signature, bytes):
        raise AttestationError("COSE_Sign1 fields have the wrong types")
    if not isinstance(unprotected, Mapping):  # a FrozenDict inside a tagged (immutable) array
        raise AttestationError("COSE_Sign1 unprotected header is not a map")
    if unprotected:
        # Nothing may ride outside the signature; the NSM never sends unprotected headers.
        raise AttestationError("COSE_Sign1 unprotected header is not empty")
    header = _decode_exact(protected, "protected header")
    if header != {1: COSE_ALG_ES384}:
        raise AttestationError("protected header must be exactly {alg: ES384}")
    if len(signature) != 96:
        raise AttestationError(f"signature is {len(signature)} bytes, expected 96 (ES384 r||s)")
    if not 0 < len(payload_bytes) <= MAX_PAYLOAD_BYTES:
        raise AttestationError("payload is empty or too large")

    # --- payload syntax (AWS nsm-api §3.2.2) ------------------------------------------------
    payload = _decode_exact(payload_bytes, "payload")
    if not isinstance(payload, dict) or not all(isinstance(k, str) for k in payload):
        raise AttestationError("payload is not a map with text keys")
    unknown = set(payload) - set(PAYLOAD_KEYS)
    if unknown:
        raise AttestationError(f"payload has unknown fields: {', '.join(sorted(unknown))}")
    missing = MANDATORY_KEYS - set(payload)
    if missing:
        raise AttestationError(f"payload lacks mandatory fields: {', '.join(sorted(missing))}")
    module_id = payload["module_id"]
    if not isinstance(module_id, str) or not module_id:
        raise AttestationError("module_id is not a non-empty text string")
    digest = payload["digest"]
    if digest != "SHA384":
        raise AttestationError(f"digest is {digest!r}, expected 'SHA384'")
    timestamp_ms = payload["timestamp"]
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or not 0 < timestamp_ms < 2**64:
        raise AttestationError("timestamp is not a positive 64-bit integer")
    pcrs = payload["pcrs"]
    if not isinstance(pcrs, dict) or not 1 <= len(pcrs) <= 32:
        raise AttestationError("pcrs is not a map of 1..32 entries")
    want_len = PCR_LENGTHS[digest]
    for idx, value in pcrs.items():
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < 32:
            raise AttestationError(f"PCR index {idx!r} is out of range")
        if not isinstance(value, bytes) or len(value) != want_len:
            raise AttestationError(f"PCR{idx} is not {want_len} bytes")
    cert_der = _bytes_field(payload, "certificate", 1, 1024, optional=False)
    cabundle_der = payload["cabundle"]
    if not isinstance(cabundle_der, list) or not cabundle_der:
        raise AttestationError("cabundle is not a non-empty array")
    for i, item in enumerate(cabundle_der):
        if not isinstance(item, bytes) or not 1 <= len(item) <= 1024:
            raise AttestationError(f"cabundle[{i}] is not a certificate of 1..1024 bytes")
    doc_public_key = _bytes_field(payload, "public_key", 1, 1024, optional=True)
    doc_user_data = _bytes_field(payload, "user_data", 0, 1024, optional=True)
    doc_nonce = _bytes_field(payload, "nonce", 0, 1024, optional=True)

    # --- certificate chain to the pinned root ----------------------------------------------
    when = _resolve_time(at, timestamp_ms)
    root_der = root.public_bytes(_DER)
    if not hmac.compare_digest(hashlib.sha256(cabundle_der[0]).digest(), hashlib.sha256(root_der).digest()):
        raise AttestationError("cabundle[0] is not the pinned root certificate")
    assert cert_der is not None
    leaf = _load_cert(cert_der, "document certificate")
    intermediates = [_load_cert(der, f"cabundle[{i}]") for i, der in enumerate(cabundle_der) if i > 0]
    # Path from the leaf up: leaf, INTERM_N, ..., INTERM_1, then the pinned root (never cabundle[0]).
    path = [("document certificate", leaf)]
    path += [(f"cabundle[{i}]", c) for i, c in reversed(list(enumerate(intermediates, start=1)))]
    path.append(("pinned root", root))
    for pos, (what, cert) in enumerate(path):
        is_ca = pos > 0
        # CA certificates below this one in the path (the leaf does not count).
        below = max(pos - 1, 0)
        _check_cert(cert, what, when, ca=is_ca, below=below)
        if pos + 1 < len(path):
            _verify_issued(cert, path[pos + 1][1], what)

    # --- the COSE signature --------------------------------------------------------------------
    sig_structure = cbor2.dumps(["Signature1", protected, b"", payload_bytes])
    r = int.from_bytes(signature[:48], "big")
    s = int.from_bytes(signature[48:], "big")
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    try:
        leaf_key.verify(encode_dss_signature(r, s), sig_structure, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise AttestationError("COSE signature does not verify with the document certificate") from None

    # --- what the caller expects ----------------------------------------------------------------
    doc_time = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    if max_age is not None:
        if doc_time < when - timedelta(seconds=max_age):
            raise AttestationError(f"document is older than {max_age:g} s (made {doc_time.isoformat()})")
        if doc_time > when + timedelta(seconds=future_skew):
            raise AttestationError(f"document is dated in the future ({doc_time.isoformat()})")
    pcr_map = {int(k): bytes(v) for k, v in pcrs.items()}
    if not allow_debug and is_debug_pcrs(pcr_map):
        raise AttestationError("document comes from an enclave in debug mode (all-zero PCRs)")
    for idx, allowed in (expected_pcrs or {}).items():
        values = [allowed] if isinstance(allowed, bytes | bytearray) else list(allowed)
        have = pcr_map.get(idx)
        if have is None:
            raise AttestationError(f"PCR{idx} is not in the document")
        if not any(hmac.compare_digest(have, bytes(v)) for v in values):
            raise AttestationError(f"PCR{idx} does not match the expected measurement (got {have.hex()})")
    for name, want, have_value in (("nonce", nonce, doc_nonce), ("public_key", public_key, doc_public_key),
                                   ("user_data", user_data, doc_user_data)):
        if want is not None and (have_value is None or not hmac.compare_digest(bytes(want), have_value)):
            raise AttestationError(f"document {name} does not match the expected value")

    return AttestationDocument(
        module_id=module_id, digest=digest, timestamp_ms=timestamp_ms, pcrs=pcr_map, certificate=leaf,
        cabundle=tuple([root, *intermediates]), public_key=doc_public_key, user_data=doc_user_data,
        nonce=doc_nonce, raw=document,
    )


def verify_identity(
    document: bytes,
    identity_public_key: bytes,
    nonce: bytes,
    *,
    root: x509.Certificate | None = None,
    max_age: float = 300.0,
    expected_pcrs: Mapping[int, bytes | Iterable[bytes]] | None = None,
    at: datetime | Literal["document"] | None = None,
) -> AttestationDocument:
    """Check a GetIdentity answer: a fresh document from a non-debug enclave that binds this
    validator identity key (``public_key``) and the caller's ``nonce``."""
    if not nonce:
        raise AttestationError("a nonce is required to check a GetIdentity document (replay)")
    return verify(
        document, root=root, at=at, max_age=max_age, expected_pcrs=expected_pcrs, nonce=nonce,
        public_key=identity_public_key, user_data=IDENTITY_USER_DATA,
    )


def parse_pcr_hex(text: str) -> bytes:
    """A PCR value as written by nitro-cli / KMS policies: hex, optional 0x, 48 bytes."""
    t = text.strip().lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(t)
    except ValueError:
        raise ValueError(f"not hex: {text!r}") from None
    if len(raw) not in (32, 48, 64):
        raise ValueError(f"a PCR is 32, 48 or 64 bytes, this is {len(raw)}")
    return raw
