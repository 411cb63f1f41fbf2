"""auth_jwt's part of the development stack: a dev ES256 issuer, the ``jwt`` authenticator that
trusts it, and a 15-minute trader token (``swqos_dev_defaults``; imported only by swqos-dev)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from swqos_auth_jwt.issuer import DEV_ISSUER, DEV_KID, load_private_key, mint
from swqos_dev.contribution import DevContribution, DevFile
from swqos_dev.devstack import DevDir

ISSUER_KEY = "issuer.key"  # the names swqos_auth_jwt.issuer.mint_dev and `swqos token issue` read
ISSUER_PUB = "issuer.pub.pem"
TRADER_TOKEN_TTL = 900


def dev_defaults(dev_dir: DevDir) -> DevContribution:
    key_path = dev_dir.root / ISSUER_KEY
    if key_path.exists():  # a reused dev directory: same issuer, earlier tokens stay valid
        key = load_private_key(key_path.read_bytes())
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    audience = dev_dir.audience()

    def mint_token(sub: str, ttl: int, claims: Mapping[str, Any]) -> str:
        return mint(key, DEV_KID, DEV_ISSUER, audience, sub, ttl, **claims)

    return DevContribution(
        proxy={
            "swqos": {"plugins": ["auth_jwt"]},
            "pipeline": {"auth": ["jwt"]},
            "layers": {"auth": {"jwt": {
                "issuer": DEV_ISSUER,
                "audience": audience,
                "keys": {DEV_KID: {"public_key": str(dev_dir.root / ISSUER_PUB)}},
            }}},
        },
        files={
            "issuer_key": DevFile(ISSUER_KEY, key_pem, private=True),
            "issuer_pub": DevFile(ISSUER_PUB, pub_pem),
            "trader_jwt": DevFile("trader.jwt", (mint_token("dev-trader", TRADER_TOKEN_TTL, {}) + "\n").encode()),
        },
        banner=f"tokens         {DEV_ISSUER!r} ES256 issuer; more with: swqos token issue --dev-dir {dev_dir.root} "
               "--sub alice --ttl 300",
        mint_token=mint_token,
    )
