"""An Ed25519 private key whose private half lives in the validator's enclave.

aioquic chooses the TLS signature scheme with ``isinstance(key, Ed25519PrivateKey)`` and then calls
``key.sign(content)`` synchronously, inside the event loop, for the client CertificateVerify. This
class passes that check and forwards ``sign()`` to the swqos proxy through the *blocking*
:class:`~swqos_client.SignerClient`, whose grpc channel runs on grpc's own threads: the call never
needs the (blocked) event loop, so it cannot deadlock, and it blocks the loop for one signing round
trip per handshake (about a millisecond on a LAN; bounded by the client's deadline).
"""

from __future__ import annotations

import threading
import time

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .client import SignerClient
from .errors import BadResponse, LocalRefusal
from .payload import check_client_certificate_verify


def as_public_key(value: str | bytes | bytearray | Ed25519PublicKey) -> Ed25519PublicKey:
    """A validator identity from base58 text, 32 raw bytes or an ``Ed25519PublicKey``.

    Raises :class:`LocalRefusal` (a ``ValueError``) saying what is wrong with anything else.
    """
    if isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, str):
        try:
            raw = base58.b58decode(value.strip())
        except ValueError:
            raise LocalRefusal(f"public_key {value!r} is not base58") from None
        if len(raw) != 32:
            raise LocalRefusal(f"public_key {value!r} decodes to {len(raw)} bytes; a validator identity is 32")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) != 32:
            raise LocalRefusal(f"public_key is {len(raw)} bytes; a validator identity is 32 (or give its base58 text)")
    else:
        raise LocalRefusal(f"public_key must be base58 text, 32 bytes or an Ed25519PublicKey, not {type(value).__name__}")
    return Ed25519PublicKey.from_public_bytes(raw)


class PrivateKeyUnavailable(TypeError):
    """The private key never leaves the enclave; there are no bytes to export."""


class RemoteEd25519PrivateKey(Ed25519PrivateKey):
    """``Ed25519PrivateKey`` backed by a swqos remote signer. It signs TLS 1.3 client CertificateVerify
    content and nothing else; everything else is refused locally, before any network call.

    ``public_key`` pins the validator identity the caller expects: base58 text (as Solana tools
    print it), 32 raw bytes, or an ``Ed25519PublicKey``. When omitted it is fetched once through
    ``GetIdentity`` (lazily, on first use). When given, a proxy that reports another key is
    refused, and every returned signature is verified against the pinned key before use.
    """

    def __init__(
        self,
        client: SignerClient,
        *,
        public_key: str | bytes | Ed25519PublicKey | None = None,
        timeout: float | None = None,
        verify_signatures: bool = True,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._verify = verify_signatures
        self._lock = threading.Lock()
        self._public: Ed25519PublicKey | None = None
        if public_key is not None:
            self._public = as_public_key(public_key)
        self._pinned = public_key is not None
        #: Count of remote signatures obtained (diagnostics; the enclave keeps its own count).
        self.signatures = 0
        #: Seconds the last remote ``sign()`` took, retries included.
        self.last_sign_seconds: float | None = None

    @property
    def client(self) -> SignerClient:
        return self._client

    def public_key(self) -> Ed25519PublicKey:
        if self._public is None:
            with self._lock:
                if self._public is None:
                    ident = self._client.get_identity(timeout=self._timeout)
                    self._public = Ed25519PublicKey.from_public_bytes(ident.public_key)
        return self._public

    def check_identity(self) -> bytes:
        """Ask the proxy which key it signs with; refuse if it differs from the pinned key. Returns the key."""
        ident = self._client.get_identity(timeout=self._timeout)
        if self._pinned and ident.public_key != self.public_key_bytes():
            raise BadResponse("the proxy signs with a different validator identity than the one pinned")
        if self._public is None:
            self._public = Ed25519PublicKey.from_public_bytes(ident.public_key)
        return ident.public_key

    def public_key_bytes(self) -> bytes:
        return self.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(self, data: bytes) -> bytes:  # type: ignore[override]
        payload = check_client_certificate_verify(data)
        start = time.perf_counter()
        signature = self._client.sign_certificate_verify(payload, timeout=self._timeout)
        self.last_sign_seconds = time.perf_counter() - start
        if self._verify:
            try:
                self.public_key().verify(signature, payload)
            except InvalidSignature:
                # Presenting a bad signature to a leader fails the handshake there anyway, and can
                # count against the validator; better to fail here with a clear reason.
                raise BadResponse("the remote signature does not verify against the validator identity") from None
        self.signatures += 1
        return signature

    def private_bytes(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        raise PrivateKeyUnavailable("the validator identity key is held by the remote signer and cannot be exported")

    def private_bytes_raw(self) -> bytes:
        raise PrivateKeyUnavailable("the validator identity key is held by the remote signer and cannot be exported")

    # cryptography's ABC requires copying; a copy shares the client (the key has no local secret).
    def __copy__(self) -> RemoteEd25519PrivateKey:
        return self

    def __deepcopy__(self, memo: dict) -> RemoteEd25519PrivateKey:
        return self

    def __reduce__(self) -> object:
        raise TypeError("a RemoteEd25519PrivateKey cannot be pickled")

    def __repr__(self) -> str:
        return f"<RemoteEd25519PrivateKey via {self._client.target}>"


__all__ = ["LocalRefusal", "PrivateKeyUnavailable", "RemoteEd25519PrivateKey", "as_public_key"]
