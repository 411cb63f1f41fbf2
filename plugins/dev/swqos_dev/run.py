"""``swqos dev`` (and ``swqos serve --dev``): the whole system on loopback, like ``vault server -dev``.

The enclave runs as a child process on a Unix socket and dies with this process (the kernel's
``start_enclave_process`` sets ``PR_SET_PDEATHSIG``); the host-proxy runs in this process. On
SIGINT or SIGTERM both stop, the socket is removed and one "stopped" line is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from swqos_core import config
from swqos_core.enclave.child import start_enclave_process, wait_for_socket
from swqos_core.errors import ConfigError
from swqos_core.net import ListenAddress, parse_listen
from swqos_dev import devstack

DEFAULT_LISTEN = "127.0.0.1:8443"

BANNER = """
swqos development stack (NOT for production: generated keys, self-signed TLS, dev token issuer)

  directory      {root}
  host-proxy     {target}   (gRPC, TLS 1.3 only; trust ca.pem)
  enclave        pid {pid}, unix socket {socket}
  identity       {identity}
{extra}
Call it (grpcurl):
  grpcurl -cacert {root}/ca.pem -H "authorization: Bearer $(cat {root}/trader.jwt)" \\
    -d '{{"payload": "<base64 CertificateVerify>"}}' {target} swqos.v1.Signer/SignCertificateVerify
Keep this directory to restart with the same keys: swqos serve --dev --dev-dir {root}
Stop:          Ctrl-C
"""


def check_listen(text: str, public: bool) -> ListenAddress:
    """The dev stack listens on loopback unless ``--dev-public`` says otherwise."""
    try:
        address = parse_listen(text, where="--listen")
    except ValueError as exc:
        raise devstack.DevDirError(str(exc)) from None
    if not address.is_loopback and not public:
        raise devstack.DevDirError(
            f"--listen {text} is not a loopback address; the dev stack has a development token issuer and "
            "loose quotas. Add --dev-public to expose it anyway")
    return address


def _display_target(address: ListenAddress, port: int) -> str:
    host = "localhost" if address.is_loopback or address.host in ("0.0.0.0", "::") else address.host  # noqa: S104
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(dev: devstack.DevDir, address: ListenAddress) -> None:
    from swqos_core.server import start_proxy

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    enclave = start_enclave_process(dev.enclave_config, dev.root / "enclave.log")
    proxy = None
    try:
        await wait_for_socket(dev.socket, enclave)
        proxy = await start_proxy(config.load(dev.config, process="proxy"))
        # The banner means "ready": wait (bounded) for the enclave connection, so a first call
        # made on seeing it is signed, not refused as enclave unreachable.
        for _ in range(500):
            if proxy.state.serving:
                break
            await asyncio.sleep(0.02)
        else:
            print("swqos dev: the enclave is not connected yet; calls get UNAVAILABLE until it is "
                  f"(see {dev.root / 'enclave.log'})", file=sys.stderr, flush=True)
        extra = "".join(f"  {line}\n" for line in devstack.banner_lines(dev))
        print(BANNER.format(root=dev.root, target=_display_target(address, proxy.port), pid=enclave.pid,
                            socket=dev.socket, identity=dev.identity_b58(), extra=extra), flush=True)
        await stop.wait()
    finally:
        if proxy is not None:
            await proxy.stop()
        enclave.terminate()
        try:
            await asyncio.to_thread(enclave.wait, 5)
        except subprocess.TimeoutExpired:
            enclave.kill()
            await asyncio.to_thread(enclave.wait)
        with contextlib.suppress(FileNotFoundError):
            dev.socket.unlink()  # a SIGTERMed enclave does not remove it itself
        print(f"swqos dev: stopped (enclave pid {enclave.pid} exited, {dev.socket} removed)", flush=True)


def run_dev(dev_dir: str | None, listen: str | None, public: bool) -> int:
    listen = listen or DEFAULT_LISTEN
    try:
        address = check_listen(listen, public)
        root = Path(dev_dir) if dev_dir else Path(tempfile.mkdtemp(prefix="swqos-dev-"))
        dev = devstack.prepare(root, listen=listen)
    except (devstack.DevDirError, ConfigError, OSError) as exc:
        print(f"swqos dev: {exc}", file=sys.stderr)
        return 2
    if public:
        print(f"swqos dev: WARNING: listening on {listen}, reachable from other hosts, with a development "
              "token issuer and loose quotas", file=sys.stderr, flush=True)
    asyncio.run(serve(dev, address))
    return 0
