"""The rule, after Firedancer's keyguard (``fd_keyguard_payload_matches_tls_cv`` and the stricter
``fd_keyguard_authorize_tls_cv``), RFC 8446 §4.4.3:

    64 x 0x20 || "TLS 1.3, client CertificateVerify" || 0x00 || transcript hash

The whole 98-byte prefix and the exact length are compared: "starts with 64 spaces" alone is
not unique (Firedancer's event challenge-response starts the same way).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from swqos_core.errors import invalid_argument

_PAD = b"\x20" * 64
CLIENT_PREFIX = _PAD + b"TLS 1.3, client CertificateVerify" + b"\x00"
SERVER_PREFIX = _PAD + b"TLS 1.3, server CertificateVerify" + b"\x00"
assert len(CLIENT_PREFIX) == len(SERVER_PREFIX) == 98

SHA256_LEN, SHA384_LEN = 32, 48


@dataclass
class TlsCvSettings:
    #: Also sign *server* CertificateVerify payloads. A trader's client never needs one.
    allow_server_context: bool = False
    #: Accept only 130-byte payloads (SHA-256 suites), Firedancer's strict rule.
    only_130: bool = False


class TlsCvMatcher:
    def __init__(self, settings: TlsCvSettings | None = None) -> None:
        settings = settings or TlsCvSettings()
        hashes = (SHA256_LEN,) if settings.only_130 else (SHA256_LEN, SHA384_LEN)
        self.lengths = frozenset(len(CLIENT_PREFIX) + h for h in hashes)
        self.prefixes = (CLIENT_PREFIX, SERVER_PREFIX) if settings.allow_server_context else (CLIENT_PREFIX,)

    def match(self, payload: bytes) -> None:
        if len(payload) not in self.lengths:
            allowed = " or ".join(str(n) for n in sorted(self.lengths))
            raise invalid_argument(f"not a CertificateVerify: length {len(payload)}, expected {allowed}",
                                   label="length")
        head = payload[:98]
        if any(hmac.compare_digest(head, p) for p in self.prefixes):
            return
        if head[:64] != _PAD:
            raise invalid_argument("not a CertificateVerify: does not start with 64 spaces", label="prefix")
        if head == SERVER_PREFIX:
            raise invalid_argument("server CertificateVerify is not allowed", label="server_context")
        raise invalid_argument("not a CertificateVerify: wrong context string", label="context")
