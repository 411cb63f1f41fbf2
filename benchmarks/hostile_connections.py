"""Transport floods against a real host-proxy (python -m benchmarks.hostile_connections [--quick] [--set KEY=JSON]).

Loopback only, bounded in count and time (about a minute). The stack is the one ``swqos serve
--dev`` runs (``swqos_dev.devstack``: the same generated keys and configs), but with the enclave
and the host-proxy (``swqos serve --config``) each in its own process, so the proxy's RSS is
measured alone and ``--set`` can override ``[proxy]`` settings (``--set max_connections=8192``)
to see what each limit contributes. Scenarios, each reporting what a well-behaved trader sees:

- idle connections: N plain TCP connections that never speak, and M TLS connections that finish
  the handshake and then say nothing; a fresh client's first signature during the flood (best and
  worst of a few tries), and the proxy's RSS before, during, and 10 s after they close;
- body-less streams: HTTP/2 streams (over several connections) that send HEADERS and never a
  body; how long until the server ends each one, and with which status.

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import swqos_core  # noqa: F401  (TLS 1.3-only cipher policy before grpc is imported)

# isort: split
import grpc

from benchmarks import _procs
from swqos_proto import SERVICE, signer_pb2
from swqos_testing.payloads import valid_cv

REPO = Path(__file__).resolve().parent.parent

FRESH_TRIES = 3
AFTER_CLOSE_S = 10.0


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
    """The dev stack's enclave and host-proxy, each a subprocess, the proxy on a loopback port."""

    def __init__(self, root: Path, overrides: dict[str, Any]) -> None:
        self.root, self.port, self.overrides = root, free_port(), overrides
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Stack:
        from swqos_core.enclave.child import start_enclave_process, wait_for_socket
        from swqos_dev import devstack
        from swqos_testing.configs import merge

        self.dev = dev = devstack.prepare(self.root, listen=f"127.0.0.1:{self.port}")
        devstack.write_toml(dev.config, merge(devstack.proxy_config(dev, f"127.0.0.1:{self.port}"),
                                              {"proxy": self.overrides}))
        try:
            enclave = start_enclave_process(dev.enclave_config, self.root / "enclave.log")
            self.procs.append(enclave)
            asyncio.run(wait_for_socket(dev.socket, enclave))
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "swqos_core.cli", "serve", "--config", str(dev.config)], cwd=REPO,
                env=_procs.env(), stdout=subprocess.DEVNULL, stderr=open(self.root / "proxy.log", "ab"))
            self.procs.append(self.proc)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"the proxy exited: {(self.root / 'proxy.log').read_text()[-2000:]}")
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the proxy did not start")
            time.sleep(0.5)
        except BaseException:
            for p in reversed(self.procs):
                _procs.stop(p)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            _procs.stop(p)

    def channel(self) -> grpc.aio.Channel:
        creds = grpc.ssl_channel_credentials(self.dev.ca.read_bytes())
        return grpc.aio.secure_channel(f"localhost:{self.port}", creds)

    @property
    def token(self) -> str:
        return self.dev.root.joinpath("trader.jwt").read_text().strip()


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
    ctx = ssl.create_default_context(cafile=str(stack.dev.ca))
    ctx.set_alpn_protocols(["h2"])
    writers = []
    refused: Counter[str] = Counter()
    for _ in range(tls):
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", stack.port, ssl=ctx, server_hostname="localhost"), 5)
            writers.append(writer)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            refused[type(exc).__name__] += 1
    await asyncio.sleep(hold_s)
    during = rss_mb(pid)
    fresh = [await first_signature_seconds(stack) for _ in range(FRESH_TRIES)]
    tls_still_open = sum(1 for w in writers if not w.transport.is_closing())
    for s in socks:
        s.close()
    for w in writers:
        w.close()
    await asyncio.sleep(AFTER_CLOSE_S)
    after = rss_mb(pid)
    return {"tcp": tcp, "tls": tls, "tls_handshakes_completed": len(writers), "tls_refused": dict(refused),
            "tls_still_open_at_fresh_client": tls_still_open,
            "rss_before_mb": round(before, 1), "rss_during_mb": round(during, 1),
            "rss_10s_after_mb": round(after, 1), "rss_growth_10s_after_mb": round(after - before, 1),
            "fresh_client_first_sign_s": [round(s, 3) for s, _ in fresh],
            "fresh_client_status": [st for _, st in fresh]}


async def bodyless_streams(stack: Stack, streams: int, connections: int) -> dict:
    """Open streams that send HEADERS only (a request iterator that never yields), spread over
    ``connections`` channels so each stays within the per-connection stream limit."""
    never = asyncio.Event()

    async def silent():
        await never.wait()
        yield b""  # pragma: no cover

    async def one(call) -> tuple[float, str]:
        started = time.perf_counter()
        try:
            await call(silent(), metadata=(("authorization", f"Bearer {stack.token}"),), timeout=30)
            status = "OK"
        except grpc.aio.AioRpcError as exc:
            status = exc.code().name
        return time.perf_counter() - started, status

    channels = [stack.channel() for _ in range(connections)]
    try:
        calls = [ch.stream_unary(f"/{SERVICE}/SignCertificateVerify") for ch in channels]
        results = await asyncio.gather(*(one(calls[i % connections]) for i in range(streams)))
    finally:
        for ch in channels:
            await ch.close()
    seconds = sorted(r[0] for r in results)
    return {"streams": streams, "connections": connections, "ended_by_server_max_s": round(seconds[-1], 3),
            "median_s": round(seconds[len(seconds) // 2], 3), "statuses": dict(Counter(r[1] for r in results))}


async def scenarios(stack: Stack, quick: bool) -> dict:
    tcp, tls = (300, 50) if quick else (3000, 500)
    baseline_s, baseline_status = await first_signature_seconds(stack)
    return {
        "baseline_first_sign_s": round(baseline_s, 3), "baseline_status": baseline_status,
        "idle_flood": await idle_flood(stack, tcp, tls, hold_s=2.0),
        "bodyless_streams": await bodyless_streams(stack, 50 if quick else 300, 1 if quick else 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the connections")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a [proxy] setting, e.g. max_connections=8192")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # the proxy inherits it
    with tempfile.TemporaryDirectory(prefix="swqos-hostile-") as tmp, Stack(Path(tmp) / "dev", overrides) as stack:
        result = asyncio.run(scenarios(stack, args.quick))
    result["settings"] = {"quick": args.quick, "proxy_overrides": overrides, "cpus": os.cpu_count(),
                          "nofile_limit": min(hard, 65536)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
