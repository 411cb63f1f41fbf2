"""``swqos manifest drill``: the threat model's annual kill-switch test, runnable any day, offline.

It publishes real signed manifests on a local HTTPS server (self-signed certificate, pinned as the
only CA) and runs a staging proxy's kill switch against it: the real ``https`` revocation source
driving a real :class:`~swqos_core.state.ServiceState`, exactly what ``swqos serve`` builds. It
checks, printing each step:

1. a manifest that does not name the dummy release keeps it serving;
2. a manifest revoking the dummy release halts it within one poll interval (plus the fetch);
3. a restart while halted comes up halted, before its first poll;
4. a replay of the older manifest is refused and does not lift the halt;
5. a newer manifest lifts the halt.

``--threshold`` runs :mod:`~swqos_killswitch.threshold_drill` instead, the same with a trust root.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import ipaddress
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swqos_core.state import EnclaveIdentity, ServiceState
from swqos_killswitch.manifest import build_manifest
from swqos_killswitch.signing import generate_private_key, key_id, public_key_pem, sign_blob
from swqos_killswitch.sources import HttpsSource, HttpsSourceSettings

SCOPE = "drill"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swqos kill-switch drill")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    crt, pem = directory / "drill.crt", directory / "drill.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem


class TLSServer(http.server.ThreadingHTTPServer):
    """TLS handshake in the per-connection thread, never in the accept loop: a client that stalls
    (or is cancelled) mid-handshake must not block ``shutdown()``."""

    daemon_threads = True

    def __init__(self, addr: tuple[str, int], handler: type, ctx: ssl.SSLContext, *, handshake_timeout: float = 5.0) -> None:
        self.tls = ctx
        self.handshake_timeout = handshake_timeout
        super().__init__(addr, handler)

    def finish_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        request.settimeout(self.handshake_timeout)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except OSError:
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            conn.close()


class Publisher:
    """A tiny HTTPS server holding the current manifest and signature."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.docs: dict[str, bytes] = {}
        docs = self.docs

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = docs.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd = TLSServer(("127.0.0.1", 0), Handler, ctx)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}/revocation.json"

    def publish(self, manifest: bytes, signature: bytes) -> None:
        self.docs["/revocation.json.sig"] = signature
        self.docs["/revocation.json"] = manifest

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def wait_until(state: ServiceState, predicate: Callable[[], bool], limit: float) -> float | None:
    """Seconds until ``predicate`` held, or None if it did not within ``limit``."""
    start = time.monotonic()
    changed = asyncio.Event()
    state.subscribe(changed.set)
    try:
        async with asyncio.timeout(limit):
            while not predicate():
                await changed.wait()
                changed.clear()
    except TimeoutError:
        return None
    return time.monotonic() - start


async def run_drill(interval: float = 2.0, release: str = "0.0.0-drill",
                    out: Callable[[str], None] = print) -> bool:
    """Run the drill; print each step through ``out``; return True if every check passed."""
    ok = True
    timeout = min(5.0, max(2.0, interval))
    limit = interval + 2 * timeout  # one poll interval plus one fetch, with room for the fetch to fail once

    def check(cond: bool, what: str) -> None:
        nonlocal ok
        ok = ok and cond
        out(f"   [{'PASS' if cond else 'FAIL'}] {what}")

    with tempfile.TemporaryDirectory(prefix="swqos-drill-") as tmp:
        d = Path(tmp)
        out("1. generate a manifest signing key (ECDSA P-256, cosign format) and pin it")
        signer = generate_private_key()
        pub = d / "drill.pub"
        pub.write_bytes(public_key_pem(signer.public_key()))
        kid = key_id(signer.public_key())
        out(f"   key id {kid}")
        out("2. start a local HTTPS manifest server (self-signed certificate, pinned as the only CA)")
        cert, tls_key = self_signed_certificate(d)
        server = Publisher(cert, tls_key)
        out(f"   {server.url}")

        def publish(version: int, revoked: list[str], issued: dt.datetime | None = None) -> None:
            issued = issued or dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            data = build_manifest(version=version, scope=SCOPE, issued_at=issued,
                                  expires=issued + dt.timedelta(hours=1), revoked_versions=revoked,
                                  key_id=kid, reason="kill-switch drill" if revoked else None)
            server.publish(data, sign_blob(signer, data))
            out(f"   published manifest v{version} revoking {revoked or 'nothing'}")

        settings = HttpsSourceSettings(url=server.url, public_key=pub, key_id=kid, scope=SCOPE,
                                       state_dir=d / "state", ca_bundle=cert, poll_interval=interval,
                                       connect_timeout=timeout, total_timeout=timeout)

        def staging_proxy() -> tuple[ServiceState, HttpsSource]:
            state = ServiceState(release_version=release)
            state.set_enclave(True, EnclaveIdentity(public_key=b"\0" * 32, measurement=None, signatures=0))
            return state, HttpsSource(settings, state, "drill")

        sources: list[HttpsSource] = []
        try:
            out(f"3. start a staging proxy running release {release!r}, polling every {interval:g} s")
            publish(1, ["0.0.0-not-this-one"])
            state, src = staging_proxy()
            sources.append(src)
            await src.start()
            took = await wait_until(state, lambda: state.serving, limit)
            check(took is not None, "serving on a manifest that does not name it")

            out(f"4. revoke release {release!r}")
            publish(2, [release])
            took = await wait_until(state, lambda: not state.serving, limit)
            check(took is not None and took <= interval + timeout,
                  (f"halted after {took:.2f} s " if took is not None else "NOT halted within the limit ")
                  + f"(one poll interval is {interval:g} s)")
            out(f"   operator sees: health NOT_SERVING, reason: {state.not_serving_reason()}")
            snap = src.engine.snapshot()
            out(f"   metrics: manifest_version={snap['manifest_version']} accepted={snap['accepted_total']} "
                f"rejected={snap['rejected_total']} fetch_failures={snap['fetch_failures_total']}")

            out("5. restart the staging proxy while halted, with the manifest server unreachable")
            await src.close()
            server.docs.clear()
            state, src = staging_proxy()
            sources.append(src)
            await src.start()
            check(not state.serving and "kill_switch" in state.halt_reasons,
                  "halted at start, before the first poll (persisted manifest)")

            out("6. replay the older manifest v1 (what an attacker who wants signing back would do)")
            publish(1, ["0.0.0-not-this-one"])
            src.poll_now()
            before = src.engine.rejected_total["rollback"]
            deadline = time.monotonic() + limit
            while src.engine.rejected_total["rollback"] == before and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            check(src.engine.rejected_total["rollback"] > before and not state.serving,
                  "replay refused (counted as a security event), still halted")

            out("7. publish a newer manifest that no longer names the release")
            publish(3, ["0.0.0-not-this-one"])
            src.poll_now()
            took = await wait_until(state, lambda: state.serving, limit)
            check(took is not None, "halt lifted, serving again")
        finally:
            for s in sources:
                await s.close()
            server.close()
    out("drill " + ("PASSED" if ok else "FAILED"))
    return ok

