"""Ed25519 signer backed by PyNaCl (libsodium).

Why PyNaCl rather than ``cryptography``: ~23 µs per signature against ~34 µs here (design note
§10), libsodium's signing is constant-time, and the key object can be built from the seed
without an intermediate PEM/DER copy of the private key.
"""

from __future__ import annotations

from nacl.signing import SigningKey

from swqos_core.layers import KeyMaterial


class Ed25519Signer:
    def __init__(self) -> None:
        self._key: SigningKey | None = None

    def load(self, key: KeyMaterial) -> bytes:
        if len(key.seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = SigningKey(bytes(key.seed))
        return bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        if self._key is None:
            raise RuntimeError("signer used before a key was loaded")
        return self._key.sign(message).signature
