"""Open a QUIC connection to a Solana leader's TPU as the validator (needs the ``quic`` extra: aioquic).

The connection presents Agave's client certificate for the validator identity and gets its TLS 1.3
CertificateVerify signed by the swqos proxy. One remote signature per connection; the connection
then carries as many streams as the leader allows.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aioquic import tls
from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.quic.configuration import QuicConfiguration
from aioquic.tls import CipherSuite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .certificate import client_certificate
from .client import SignerClient
from .errors import SwqosError
from .remote_key import RemoteEd25519PrivateKey

ALPN_TPU = "solana-tpu"

#: Size of the CertificateVerify content the signer receives, per negotiated suite.
PAYLOAD_SIZE: dict[CipherSuite, int] = {
    CipherSuite.AES_128_GCM_SHA256: 130,
    CipherSuite.CHACHA20_POLY1305_SHA256: 130,
    CipherSuite.AES_256_GCM_SHA384: 146,
}

#: Force 130-byte payloads (what Firedancer's strict keyguard rule allows).
SHA256_SUITES = [CipherSuite.AES_128_GCM_SHA256]
#: 146-byte payloads, what rustls (Agave) and aioquic prefer by default.
SHA384_SUITES = [CipherSuite.AES_256_GCM_SHA384]


class HandshakeFailed(SwqosError, ConnectionError):
    """The QUIC handshake did not complete. ``__cause__`` is the signer's error when signing failed."""


@dataclass
class HandshakeInfo:
    """What happened during the handshake (for logs and the demo)."""

    cipher_suite: CipherSuite | None = None
    payload_size: int | None = None
    sign_seconds: float | None = None
    handshake_seconds: float | None = None


class _SigningForQuic(Ed25519PrivateKey):
    """Adapter handed to aioquic: turns any signer failure into a TLS alert.

    aioquic only converts ``tls.Alert`` into a clean connection close; any other exception raised
    inside its datagram handler would escape into the event loop and leave the handshake hanging
    until it times out. The original error is kept so the caller gets it as the cause.
    """

    def __init__(self, key: RemoteEd25519PrivateKey, info: HandshakeInfo) -> None:
        self._key = key
        self._info = info
        self.error: BaseException | None = None

    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:  # type: ignore[override]
        self._info.payload_size = len(data)
        start = time.perf_counter()
        try:
            return self._key.sign(data)
        except Exception as exc:  # fail closed: every failure aborts the handshake
            self.error = exc
            raise tls.AlertInternalError("remote signer refused or failed") from exc
        finally:
            self._info.sign_seconds = time.perf_counter() - start

    def private_bytes(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        return self._key.private_bytes(*args, **kwargs)  # raises

    def private_bytes_raw(self) -> bytes:
        return self._key.private_bytes_raw()  # raises

    def __copy__(self) -> _SigningForQuic:
        return self

    def __deepcopy__(self, memo: dict) -> _SigningForQuic:
        return self


class ValidatorConnection(QuicConnectionProtocol):
    """The aioquic protocol ``connect_as_validator`` yields: the handshake details, and ``send``."""

    handshake: HandshakeInfo

    def send(self, data: bytes) -> int:
        """Send ``data`` on a new unidirectional stream and close the stream; returns its id.

        This is how a TPU takes transactions: one serialized transaction per stream (at most 1232
        bytes; a leader drops larger ones). The packets are handed to the socket before this
        returns. Raises ``ConnectionError`` once the connection is closed.
        """
        if self._closed.is_set():
            raise ConnectionError("the QUIC connection is closed")
        stream_id = self._quic.get_next_available_stream_id(is_unidirectional=True)
        self._quic.send_stream_data(stream_id, bytes(data), end_stream=True)
        self.transmit()
        return stream_id


def _as_remote_key(signer: RemoteEd25519PrivateKey | SignerClient) -> RemoteEd25519PrivateKey:
    if isinstance(signer, RemoteEd25519PrivateKey):
        return signer
    if isinstance(signer, SignerClient):
        return RemoteEd25519PrivateKey(signer)
    raise TypeError("signer must be a RemoteEd25519PrivateKey or a SignerClient")


@asynccontextmanager
async def connect_as_validator(
    host: str,
    port: int,
    signer: RemoteEd25519PrivateKey | SignerClient,
    *,
    cipher_suites: Sequence[CipherSuite] | None = None,
    server_name: str | None = None,
    alpn: str = ALPN_TPU,
    handshake_timeout: float = 2.0,
    idle_timeout: float = 30.0,
    verify_mode: int = ssl.CERT_NONE,
) -> AsyncIterator[ValidatorConnection]:
    """Connect to ``host:port`` presenting the validator identity; yields the aioquic protocol.

    ``cipher_suites`` picks the payload the signer sees: ``SHA256_SUITES`` → 130 bytes,
    ``SHA384_SUITES`` → 146 bytes, None → aioquic's default order (146 with most servers).
    ``verify_mode`` stays ``CERT_NONE`` for real leaders: their server certificate is the same
    self-signed dummy template and cannot chain to anything.
    Raises :class:`HandshakeFailed` (cause: the signer's typed error when it refused).
    """
    key = _as_remote_key(signer)
    loop = asyncio.get_running_loop()
    # Both are blocking: keep them off the event loop. The warm-up makes sure the signing call
    # inside the handshake does not also pay the connection to the proxy (TCP, TLS, HTTP/2).
    await loop.run_in_executor(None, key.client._warm_up)  # never raises: the handshake reports failures
    public_key = await loop.run_in_executor(None, key.public_key)
    info = HandshakeInfo()
    adapter = _SigningForQuic(key, info)
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=[alpn],
        verify_mode=verify_mode,
        idle_timeout=idle_timeout,
        server_name=server_name or host,
        cipher_suites=list(cipher_suites) if cipher_suites else None,
    )
    config.certificate = client_certificate(public_key)
    config.private_key = adapter

    def make_protocol(*args: object, **kwargs: object) -> ValidatorConnection:
        proto = ValidatorConnection(*args, **kwargs)  # type: ignore[arg-type]
        proto.handshake = info
        return proto

    cm = connect(host, port, configuration=config, create_protocol=make_protocol, wait_connected=True)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(handshake_timeout):
            proto = await cm.__aenter__()
    except (ConnectionError, TimeoutError) as exc:
        cause = adapter.error or exc
        if adapter.error is not None:
            reason = f"handshake with {host}:{port} aborted: remote signing failed ({adapter.error})"
        elif isinstance(exc, TimeoutError):
            reason = f"handshake with {host}:{port} did not complete within {handshake_timeout} s"
        else:
            reason = f"handshake with {host}:{port} failed"
        raise HandshakeFailed(reason) from cause
    info.handshake_seconds = time.perf_counter() - start
    suite = proto._quic.tls.key_schedule.cipher_suite if proto._quic.tls.key_schedule else None
    info.cipher_suite = suite
    try:
        yield proto
    except BaseException as exc:
        if not await cm.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await cm.__aexit__(None, None, None)
