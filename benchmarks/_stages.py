"""Micro-costs measured in-process with the same libraries the stack uses (not the live run)."""

from __future__ import annotations

import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _per_op(fn, seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= end:
            return (now - t0) / n


def measure(seconds: float = 0.3) -> dict[str, Any]:
    msg = b" " * 64 + b"TLS 1.3, client CertificateVerify\x00" + bytes(32)
    out: dict[str, Any] = {}
    k = Ed25519PrivateKey.generate()
    out["ed25519_sign_cryptography_us"] = _per_op(lambda: k.sign(msg), seconds) * 1e6
    try:
        import nacl.signing

        nk = nacl.signing.SigningKey.generate()
        out["ed25519_sign_pynacl_us"] = _per_op(lambda: nk.sign(msg), seconds) * 1e6
    except ImportError:
        pass
    ek = ec.generate_private_key(ec.SECP256R1())
    pub = ek.public_key()
    tok = jwt.encode({"sub": "t", "aud": "a", "iss": "i", "exp": int(time.time()) + 600}, ek, algorithm="ES256")
    out["es256_jwt_verify_pyjwt_us"] = _per_op(
        lambda: jwt.decode(tok, pub, algorithms=["ES256"], audience="a", issuer="i"), seconds) * 1e6
    out["es256_jwt_mint_pyjwt_us"] = _per_op(
        lambda: jwt.encode({"sub": "t", "exp": 2}, ek, algorithm="ES256"), seconds) * 1e6
    return out
