"""A stand-in for a Solana leader's TPU QUIC endpoint, for tests and ``swqos demo``.

Like an Agave leader it requires a client certificate, ignores the certificate's own signature,
takes the public key from it, and (through aioquic) verifies the CertificateVerify against that key.
Like a Firedancer leader it can insist that the certificate is Agave's template byte for byte.
It records which identity each connection proved and the stream data it received.

aioquic has no public switch for requesting a client certificate: this module sets the private
``tls.Context._request_client_certificate`` flag on each new connection, and checks that a
certificate was actually presented itself (aioquic would accept an empty Certificate message).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import CipherSuite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .certificate import client_certificate, public_key_from_certificate_der
from .quic import ALPN_TPU

#: Application close codes used by the stand-in (any value works; these are easy to spot in logs).
CLOSE_NO_CERTIFICATE = 0x1001
CLOSE_BAD_CERTIFICATE = 0x1002


@dataclass
class PeerRecord:
    """One connection as the stand-in saw it, appended to ``StandInTpu.peers`` when its handshake
    completes and updated as streams arrive."""

    #: The 32-byte Ed25519 key of the client certificate, i.e. the identity the client proved
    #: (aioquic verified the CertificateVerify against it). None when no usable certificate came.
    public_key: bytes | None = None
    #: The client certificate as sent (DER).
    certificate_der: bytes | None = None
    #: True when the certificate is Agave's 249-byte template for ``public_key``, byte for byte.
    matches_agave_template: bool = False
    #: The TLS 1.3 suite negotiated (decides a 130- or 146-byte CertificateVerify).
    cipher_suite: CipherSuite | None = None
    #: True when the stand-in kept the connection (a certificate, Ed25519, the template if required).
    accepted: bool = False
    #: Why the connection was closed instead: "client certificate required", "client certificate
    #: key is not Ed25519", "client certificate is not the Agave template". None when accepted.
    refusal: str | None = None
    #: Bytes received per stream id (accepted connections only; each stream capped at the
    #: stand-in's ``max_stream_bytes``: a chunk that would pass the cap is dropped).
    streams: dict[int, bytes] = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        """Every stream's bytes, in stream-id order."""
        return b"".join(self.streams[k] for k in sorted(self.streams))


class _TpuProtocol(QuicConnectionProtocol):
    tpu: StandInTpu

    def __init__(self, quic: QuicConnection, *args: object, **kwargs: object) -> None:
        super().__init__(quic, *args, **kwargs)  # type: ignore[arg-type]
        # The TLS context is created inside the connection's first receive; hook its creation to
        # flip the (private) flag before the ClientHello is processed.
        original = quic._initialize

        def initialize(peer_cid: bytes) -> None:
            original(peer_cid)
            quic.tls._request_client_certificate = True

        quic._initialize = initialize  # type: ignore[method-assign]
        self.record = PeerRecord()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            self._on_handshake()
        elif isinstance(event, events.StreamDataReceived) and self.record.accepted:
            buf = self.record.streams.get(event.stream_id, b"") + event.data
            if len(buf) <= self.tpu.max_stream_bytes:
                self.record.streams[event.stream_id] = buf
            if event.end_stream:
                self.tpu._notify()

    def _on_handshake(self) -> None:
        tls = self._quic.tls
        rec = self.record
        rec.cipher_suite = tls.key_schedule.cipher_suite if tls.key_schedule else None
        cert = tls._peer_certificate
        self.tpu.peers.append(rec)
        if cert is None:
            self._refuse(CLOSE_NO_CERTIFICATE, "client certificate required")
            return
        rec.certificate_der = cert.public_bytes(Encoding.DER)
        key = cert.public_key()
        if not isinstance(key, Ed25519PublicKey):
            self._refuse(CLOSE_BAD_CERTIFICATE, "client certificate key is not Ed25519")
            return
        # aioquic has already verified the CertificateVerify against this key.
        rec.public_key = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        rec.matches_agave_template = public_key_from_certificate_der(rec.certificate_der) == rec.public_key
        if self.tpu.require_agave_template and not rec.matches_agave_template:
            self._refuse(CLOSE_BAD_CERTIFICATE, "client certificate is not the Agave template")
            return
        rec.accepted = True
        self.tpu._notify()

    def _refuse(self, code: int, reason: str) -> None:
        self.record.refusal = reason
        self._quic.close(error_code=code, reason_phrase=reason)
        self.transmit()
        self.tpu._notify()


class StandInTpu:
    """A leader's TPU QUIC endpoint for tests: ``async with StandInTpu() as tpu:`` listens on
    ``tpu.host:tpu.port`` (UDP; port 0 picks a free one, read ``tpu.port`` after start).

    - ``require_agave_template``: refuse client certificates that are not Agave's template
      (Firedancer's rule; default True).
    - ``max_stream_bytes``: the most a stream may carry (default 1232, a transaction's limit).
    - ``peers``: one :class:`PeerRecord` per completed handshake, in order.
    - ``await tpu.wait_for(predicate, timeout=5.0)``: the first record for which
      ``predicate(record)`` is true, waiting for new handshakes and streams; ``TimeoutError``
      after ``timeout`` seconds. E.g. ``await tpu.wait_for(lambda r: r.accepted and r.data == tx)``.

    Run it on the event loop of the QUIC client under test (``connect_as_validator``), which is
    the one blocked during remote signing; the proxy answering the signing call must run elsewhere.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        require_agave_template: bool = True,
        max_stream_bytes: int = 1232,
    ) -> None:
        self.host = host
        self.port = port
        self.require_agave_template = require_agave_template
        self.max_stream_bytes = max_stream_bytes
        self.peers: list[PeerRecord] = []
        # A leader's own server certificate is the same dummy template under its own key.
        self._server_key = Ed25519PrivateKey.generate()
        self._server: QuicServer | None = None
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()

    async def start(self) -> StandInTpu:
        config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN_TPU], idle_timeout=30.0)
        config.certificate = client_certificate(self._server_key.public_key())
        config.private_key = self._server_key

        def make_protocol(*args: object, **kwargs: object) -> _TpuProtocol:
            proto = _TpuProtocol(*args, **kwargs)  # type: ignore[arg-type]
            proto.tpu = self
            return proto

        self._server = await serve(self.host, self.port, configuration=config, create_protocol=make_protocol)
        self.port = self._server._transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        return self

    async def wait_for(self, predicate: Callable[[PeerRecord], bool], timeout: float = 5.0) -> PeerRecord:
        """Wait until some peer record satisfies ``predicate``; returns it (``TimeoutError`` otherwise)."""
        async with asyncio.timeout(timeout):
            while True:
                for rec in self.peers:
                    if predicate(rec):
                        return rec
                self._changed.clear()
                await self._changed.wait()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def __aenter__(self) -> StandInTpu:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()


@dataclass
class DemoHandshake:
    """What ``swqos demo`` prints about its QUIC handshake."""

    tpu: str
    payload_size: int | None
    sign_ms: float | None
    handshake_ms: float | None
    identity_seen: bytes | None
    stream_bytes: int

    def lines(self) -> list[str]:
        import base58

        seen = base58.b58encode(self.identity_seen).decode() if self.identity_seen else "nothing"
        return [
            f"QUIC: stand-in TPU listening on {self.tpu} (ALPN solana-tpu, client certificate required)",
            f"QUIC: the enclave signed a {self.payload_size}-byte client CertificateVerify in {self.sign_ms:.2f} ms "
            f"(handshake {self.handshake_ms:.2f} ms)",
            f"QUIC: the leader saw identity {seen} and received {self.stream_bytes} bytes on a stream",
        ]


def demo_handshake(target: str, ca_pem: bytes, token: str, *, server_name: str = "localhost") -> DemoHandshake:
    """Blocking: one real QUIC handshake as the validator against a fresh stand-in TPU.

    Runs on its own event loop (call it from a worker thread): aioquic's synchronous ``sign()``
    blocks the loop it runs on for the signing round trip, so that loop must not be the one
    serving the proxy when both live in one process, as in the demo.
    """
    import logging

    from .client import SignerClient, TlsTrust
    from .quic import SHA256_SUITES, connect_as_validator
    from .remote_key import RemoteEd25519PrivateKey

    # aioquic logs every connection at INFO; the demo prints its own steps.
    logging.getLogger("quic").setLevel(logging.WARNING)

    async def scenario() -> DemoHandshake:
        with SignerClient(target, token=token, trust=TlsTrust(ca_pem=ca_pem, server_name=server_name)) as client:
            key = RemoteEd25519PrivateKey(client)
            data = b"demo transaction bytes"
            async with StandInTpu() as tpu:
                async with connect_as_validator(tpu.host, tpu.port, key, cipher_suites=SHA256_SUITES) as conn:
                    conn.send(data)
                    rec = await tpu.wait_for(lambda r: r.accepted and r.data == data)
                    hs = conn.handshake
                return DemoHandshake(
                    tpu=f"{tpu.host}:{tpu.port}",
                    payload_size=hs.payload_size,
                    sign_ms=(hs.sign_seconds or 0.0) * 1e3,
                    handshake_ms=(hs.handshake_seconds or 0.0) * 1e3,
                    identity_seen=rec.public_key,
                    stream_bytes=len(rec.data),
                )

    return asyncio.run(scenario())
