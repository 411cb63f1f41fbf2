"""Shared test helpers: keys on disk, hand-built tokens, a fake clock, request heads."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from swqos_auth_jwt.bruteforce import BruteForceSettings
from swqos_auth_jwt.issuer import sign_compact
from swqos_auth_jwt.jwt_auth import JwtAuthenticator, JwtKeySettings, JwtSettings
from swqos_auth_jwt.strict import b64url_encode
from swqos_core.errors import Rejection
from swqos_core.layers import ClientAddress, RequestHead
from swqos_testing.clock import FakeClock

ISSUER = "https://market.example"
PROBE_ISSUER = "https://market.example/probe"
AUDIENCE = "validator:7Np41oeYqPefeNQEHSv1UDhYrehxin3NStELsSKCT4K2"
NOW = 1_800_000_000


def write_pub(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def compact(header: Any, claims: Any, key: ec.EllipticCurvePrivateKey | None = None, sig: bytes | None = None) -> str:
    """A JWS from raw parts: dicts are JSON-encoded, bytes/str are used as-is (duplicate keys etc.)."""
    def enc(part: Any) -> str:
        if isinstance(part, dict):
            part = json.dumps(part, separators=(",", ":")).encode()
        elif isinstance(part, str):
            part = part.encode()
        return b64url_encode(part)

    if key is not None and isinstance(header, dict) and isinstance(claims, dict) and sig is None:
        return sign_compact(key, header, claims)
    signing_input = f"{enc(header)}.{enc(claims)}"
    if sig is None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        assert key is not None
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input}.{b64url_encode(sig)}"


def claims(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"iss": ISSUER, "sub": "trader-1", "aud": AUDIENCE, "iat": NOW, "exp": NOW + 300,
                         "jti": "jti-1"}
    for k, v in over.items():
        if v is DROP:
            c.pop(k, None)
        else:
            c[k] = v
    return c


DROP = object()
HEADER = {"alg": "ES256", "typ": "JWT", "kid": "k1"}


def head(*auth: str, rpc: str = "SignCertificateVerify", extra: tuple[tuple[str, str], ...] = ()) -> RequestHead:
    md = tuple(("authorization", a) for a in auth) + extra
    return RequestHead(rpc=rpc, peer="ipv4:198.51.100.7:4000", metadata=md)  # type: ignore[arg-type]


def bearer(token: str) -> RequestHead:
    return head(f"Bearer {token}")


async def attempt(auth, tok: str, cl: ClientAddress) -> Rejection | None:
    """Authenticate ``tok`` from ``cl``: the Rejection, or None when it was accepted."""
    try:
        await auth.authenticate(bearer(tok), cl)
    except Rejection as r:
        return r
    return None


def client(ip: str = "198.51.100.7") -> ClientAddress:
    return ClientAddress(ipaddress.ip_address(ip), "peer", f"ipv4:{ip}:4000")


@dataclass
class Env:
    tmp: Path
    k1: ec.EllipticCurvePrivateKey
    k2: ec.EllipticCurvePrivateKey
    probe: ec.EllipticCurvePrivateKey
    stranger: ec.EllipticCurvePrivateKey
    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW + 10))
    mono: FakeClock = field(default_factory=lambda: FakeClock(1000.0))

    def settings(self, **over: Any) -> JwtSettings:
        base: dict[str, Any] = dict(
            issuer=ISSUER, audience=AUDIENCE,
            keys={"k1": JwtKeySettings(write_pub(self.tmp / "k1.pem", self.k1)),
                  "k2": JwtKeySettings(write_pub(self.tmp / "k2.pem", self.k2))},
            probe_issuer=PROBE_ISSUER,
            probe_keys={"p1": JwtKeySettings(write_pub(self.tmp / "p1.pem", self.probe))},
            # brute-force protection off unless a test wants it
            brute_force=BruteForceSettings(backoff_after=1000, ban_after=1000, ban_after_56=0, ban_after_48=0),
        )
        base.update(over)
        return JwtSettings(**base)

    def auth(self, **over: Any) -> JwtAuthenticator:
        return JwtAuthenticator(self.settings(**over), clock=self.clock, monotonic=self.mono)

    def token(self, key: ec.EllipticCurvePrivateKey | None = None, header: Any = None, **claim_over: Any) -> str:
        return compact(header if header is not None else HEADER, claims(**claim_over), key or self.k1)
