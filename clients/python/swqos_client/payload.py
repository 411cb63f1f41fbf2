"""The one thing the SDK will ever ask to sign: a TLS 1.3 client CertificateVerify (RFC 8446 §4.4.3)."""

from __future__ import annotations

from .errors import LocalRefusal

#: 64 spaces, the client context string, and the 0x00 separator: 98 bytes.
CLIENT_CV_PREFIX = b" " * 64 + b"TLS 1.3, client CertificateVerify" + b"\x00"
SERVER_CV_PREFIX = b" " * 64 + b"TLS 1.3, server CertificateVerify" + b"\x00"
#: SHA-256 suites (AES_128_GCM, CHACHA20_POLY1305) give 130 bytes; the SHA-384 suite gives 146.
CV_SIZES = frozenset({len(CLIENT_CV_PREFIX) + 32, len(CLIENT_CV_PREFIX) + 48})


def check_client_certificate_verify(data: bytes) -> bytes:
    """Return ``data`` as bytes if it is a TLS 1.3 client CertificateVerify; raise :class:`LocalRefusal` if not.

    The proxy's enclave enforces the same rule; checking here as well means a bug or a hostile
    caller in the trader's own process cannot even put a transaction on the wire to the signer.
    """
    try:
        data = bytes(data)
    except TypeError as exc:
        raise LocalRefusal("payload must be bytes") from exc
    if len(data) not in CV_SIZES:
        raise LocalRefusal(f"not a TLS 1.3 client CertificateVerify: length {len(data)} is not 130 or 146")
    if data[: len(CLIENT_CV_PREFIX)] != CLIENT_CV_PREFIX:
        if data[: len(SERVER_CV_PREFIX)] == SERVER_CV_PREFIX:
            raise LocalRefusal("not a TLS 1.3 client CertificateVerify: server context")
        raise LocalRefusal("not a TLS 1.3 client CertificateVerify: prefix mismatch")
    return data


def make_client_certificate_verify(transcript_hash: bytes) -> bytes:
    """Build the signed content for a transcript hash (32 or 48 bytes); handy for tests and benchmarks."""
    if len(transcript_hash) not in (32, 48):
        raise ValueError("transcript hash must be 32 (SHA-256) or 48 (SHA-384) bytes")
    return CLIENT_CV_PREFIX + bytes(transcript_hash)
