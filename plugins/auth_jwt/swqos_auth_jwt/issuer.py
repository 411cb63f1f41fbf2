"""Minting ES256 JWTs that pass the nine-step verifier (dev issuer, tests, the dev stack).

The signature is produced with ``cryptography`` and re-encoded as the raw 64-byte r||s that JWS
requires (RFC 7518 §3.4), so nothing here depends on PyJWT.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from swqos_auth_jwt.strict import b64url_encode

DEV_KID = "dev-1"
DEV_ISSUER = "swqos-dev"


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode("utf-8")


def load_private_key(private_key_pem: bytes | str | ec.EllipticCurvePrivateKey) -> ec.EllipticCurvePrivateKey:
    if isinstance(private_key_pem, ec.EllipticCurvePrivateKey):
        key = private_key_pem
    else:
        data = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
        key = load_pem_private_key(data, password=None)  # type: ignore[assignment]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the issuer key must be an EC P-256 private key")
    return key


def sign_compact(key: ec.EllipticCurvePrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Sign ``header``.``claims`` with ES256 and return the compact JWS."""
    signing_input = f"{b64url_encode(_json(header))}.{b64url_encode(_json(claims))}"
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def mint(
    private_key_pem: bytes | str | ec.EllipticCurvePrivateKey,
    kid: str,
    issuer: str,
    audience: str,
    sub: str,
    ttl: int = 300,
    *,
    now: float | None = None,
    typ: str = "JWT",
    **claims: Any,
) -> str:
    """Mint an ES256 JWT: ``exp - iat == ttl``, a random ``jti``; ``claims`` are added (and may
    override the standard ones, which is how tests build bad tokens)."""
    key = load_private_key(private_key_pem)
    iat = int(time.time() if now is None else now)
    body: dict[str, Any] = {
        "iss": issuer, "sub": sub, "aud": audience,
        "iat": iat, "exp": iat + int(ttl), "jti": secrets.token_urlsafe(16),
    }
    body.update(claims)
    return sign_compact(key, {"alg": "ES256", "typ": typ, "kid": kid}, body)


def dev_audience(dev_dir: Path) -> str:
    """``validator:<identity pubkey>`` as the dev stack configures it."""
    return "validator:" + (dev_dir / "identity.pub").read_text().strip()


def mint_dev(dev_dir: Path, sub: str, ttl: int = 300, **claims: Any) -> str:
    """A token from the dev issuer of a ``swqos serve --dev`` directory."""
    return mint((dev_dir / "issuer.key").read_bytes(), DEV_KID, DEV_ISSUER, dev_audience(dev_dir), sub, ttl, **claims)
