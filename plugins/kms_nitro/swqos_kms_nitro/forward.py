"""In-enclave TCP → vsock forwarding, so boto3 reaches KMS with TLS ending inside the enclave.

An enclave has no network interface, only vsock to its parent (CID 3). On the parent,
``vsock-proxy 8000 kms.<region>.amazonaws.com 443`` relays bytes from vsock port 8000 to KMS.
boto3 only speaks TCP, so inside the enclave this forwarder listens on ``127.0.0.1:443`` and
copies bytes to ``AF_VSOCK (3, 8000)``. The image's ``/etc/hosts`` maps
``kms.<region>.amazonaws.com`` to ``127.0.0.1``, so boto3 uses the *real* KMS URL: SNI and the
certificate hostname check are those of KMS, and TLS runs end to end between boto3 in the enclave
and KMS. The forwarder and the parent see only ciphertext, and the parent cannot answer in KMS's
name without a certificate for that name. (The answer would still not be trusted on its own: the
provider checks the unsealed key against ``expected_public_key``.)

The forwarder is agnostic about what it connects to (``connect`` returns a connected socket), so
tests run it against TCP and Unix stand-ins where AF_VSOCK is missing.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("swqos.kms_nitro.forward")

PARENT_CID = 3
DEFAULT_PROXY_PORT = 8000


def vsock_connector(
    cid: int = PARENT_CID, port: int = DEFAULT_PROXY_PORT, timeout: float = 5.0
) -> Callable[[], socket.socket]:
    """A ``connect`` function for the parent's vsock-proxy."""
    family = getattr(socket, "AF_VSOCK", None)
    if family is None:
        raise OSError("AF_VSOCK is not available on this system (not inside a Nitro Enclave?)")

    def connect() -> socket.socket:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((cid, port))
        s.settimeout(None)
        return s

    return connect


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        # Half-close so the other direction can finish (TLS close_notify etc.).
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class Forwarder:
    """Accept TCP connections on ``listen`` and relay each to a fresh ``connect()`` socket."""

    def __init__(self, connect: Callable[[], socket.socket], listen: tuple[str, int] = ("127.0.0.1", 443)) -> None:
        if listen[0] not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the forwarder only listens on loopback")
        self.connect = connect
        self._sock = socket.create_server(listen)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    def start(self) -> Forwarder:
        t = threading.Thread(target=self._accept_loop, name="kms-forward", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = self.connect()
        except OSError as exc:
            log.warning("KMS forwarder cannot reach the vsock proxy: %s", exc)
            client.close()
            return
        with self._lock:
            self._open.update((client, upstream))
        t = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        t.start()
        _pump(client, upstream)
        t.join()
        for s in (client, upstream):
            s.close()
        with self._lock:
            self._open.difference_update((client, upstream))

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for s in list(self._open):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
