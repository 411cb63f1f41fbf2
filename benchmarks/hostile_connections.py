"""``python -m benchmarks.hostile_connections [--quick]``: transport floods against a real host-proxy.

Loopback only, bounded in count and time. The proxy runs as its own process (``swqos serve --dev``)
so its RSS is measured alone. Scenarios, each reporting what a well-behaved trader sees:

- idle connections: N plain TCP connections that never speak, and M TLS connections that finish
  the handshake and then say nothing; a fresh client's first signature during the flood, and the
  proxy's RSS before, during, and 10 s after they close;
- body-less streams: HTTP/2 streams that send HEADERS and never a body; how long until the server
  ends each one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import swqos_core  # noqa: F401  (TLS 1.3-only cipher policy before grpc is imported)
import grpc

from swqos_proto import SERVICE, signer_pb2
from swqos_testing.payloads import valid_cv


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """``swqos serve --dev`` in a subprocess, on a loopback port."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Stack:
        self.proc = subprocess.Popen([sys.executable, "-m", "swqos_core.cli", "serve", "--dev", "--dev-dir",
                                      str(self.root), "--listen", f"127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("the dev stack did not start")
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(10)

    def channel(self) -> grpc.aio.Channel:
        creds = grpc.ssl_channel_credentials((self.root / "ca.pem").read_bytes())
        return grpc.aio.secure_channel(f"localhost:{self.port}", creds)

    @property
    def token(self) -> str:
        return (self.root / "trader.jwt").read_text().strip()


async def first_signature_seconds(stack: Stack) -> tuple[float, str]:
    """A fresh channel's first SignCertificateVerify: seconds and status."""
    started = time.perf_counter()
    async with stack.channel() as channel:
        call = channel.unary_unary(f"/{SERVICE}/SignCertificateVerify")
        try:
            await call(signer_pb2.SignCertificateVerifyRequest(payload=valid_cv()).SerializeToString(),
                       metadata=(("authorization", f"Bearer {stack.token}"),), timeout=5)
            status = "OK"
        except grpc.aio.AioRpcError as exc:
            status = exc.code().name
    return time.perf_counter() - started, status


async def idle_flood(stack: Stack, tcp: int, tls: int, hold_s: float) -> dict:
    assert stack.proc is not None
    pid = stack.proc.pid
    before = rss_mb(pid)
    socks: list[socket.socket] = []
    for _ in range(tcp):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", stack.port))
        except BlockingIOError:
            pass
        socks.append(s)
    ctx = ssl.create_default_context(cafile=str(stack.root / "ca.pem"))
    ctx.set_alpn_protocols(["h2"])
    writers = []
    for _ in range(tls):
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", stack.port, ssl=ctx, server_hostname="localhost"), 5)
            writers.append(writer)
        except (OSError, TimeoutError, ssl.SSLError):
            pass
    await asyncio.sleep(hold_s)
    during = rss_mb(pid)
    fresh_s, fresh_status = await first_signature_seconds(stack)
    for s in socks:
        s.close()
    for w in writers:
        w.close()
    await asyncio.sleep(10)
    after = rss_mb(pid)
    return {"tcp": tcp, "tls_open": len(writers), "rss_before_mb": round(before, 1), "rss_during_mb": round(during, 1),
            "rss_10s_after_mb": round(after, 1), "fresh_client_first_sign_s": round(fresh_s, 3),
            "fresh_client_status": fresh_status}


async def bodyless_streams(stack: Stack, streams: int) -> dict:
    """Open streams that send HEADERS only (a request iterator that never yields)."""
    async with stack.channel() as channel:
        call = channel.stream_unary(f"/{SERVICE}/SignCertificateVerify")
        never = asyncio.Event()

        async def silent():
            await never.wait()
            yield b""  # pragma: no cover

        async def one() -> tuple[float, str]:
            started = time.perf_counter()
            try:
                await call(silent(), metadata=(("authorization", f"Bearer {stack.token}"),), timeout=30)
                status = "OK"
            except grpc.aio.AioRpcError as exc:
                status = exc.code().name
            return time.perf_counter() - started, status

        results = await asyncio.gather(*(one() for _ in range(streams)))
    seconds = sorted(r[0] for r in results)
    return {"streams": streams, "ended_by_server_max_s": round(seconds[-1], 3),
            "median_s": round(statistics.median(seconds), 3),
            "statuses": sorted({r[1] for r in results})}


async def main(quick: bool) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    tcp, tls = (300, 50) if quick else (3000, 500)
    with tempfile.TemporaryDirectory() as tmp, Stack(Path(tmp) / "dev") as stack:
        baseline_s, baseline_status = await first_signature_seconds(stack)
        return {
            "baseline_first_sign_s": round(baseline_s, 3), "baseline_status": baseline_status,
            "idle_flood": await idle_flood(stack, tcp, tls, hold_s=2.0),
            "bodyless_streams": await bodyless_streams(stack, 50 if quick else 300),
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the connections")
    args = parser.parse_args()
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    print(json.dumps(asyncio.run(main(args.quick)), indent=2))
