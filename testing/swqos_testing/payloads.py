"""Payloads for tests: valid CertificateVerify messages and near misses."""

from __future__ import annotations

import os

PAD = b"\x20" * 64
CLIENT_CONTEXT = b"TLS 1.3, client CertificateVerify"
SERVER_CONTEXT = b"TLS 1.3, server CertificateVerify"


def valid_cv(hash_len: int = 32, transcript_hash: bytes | None = None) -> bytes:
    """A client CertificateVerify: 130 bytes for SHA-256 suites, 146 for SHA-384."""
    digest = transcript_hash if transcript_hash is not None else os.urandom(hash_len)
    return PAD + CLIENT_CONTEXT + b"\x00" + digest


def server_cv(hash_len: int = 32) -> bytes:
    return PAD + SERVER_CONTEXT + b"\x00" + os.urandom(hash_len)
