"""``python -m benchmarks.instructions [--quick]``: instructions per request, counted by callgrind.

Time on a shared machine moves between runs (the same bare echo costs 180 to 400 µs of CPU per
call here from one hour to the next); instruction counts do not: the same code given the same
requests executes the same instructions whatever else the machine is doing, so a change of a
few percent shows up, and a table of where the work goes is stable. What they leave out is what
the kernel does for the process (system calls, wake-ups, cache misses): the timed scenarios
measure that.

Each target runs under ``valgrind --tool=callgrind`` (one thread at a time, every user-space
instruction counted per thread), on loopback, with one client sending signatures one at a time:

- (a) the bare grpcio echo; (b-) the deployed configuration without the swqos-ops services;
  (b) the deployed configuration (sqlite store, audit log and metrics on); (b) with the memory
  store; (b) with the redis store (a loopback redis-server with its ACL user), when installed;
- the enclave signer, answering SIGN frames one at a time and ten at a time (no host-proxy).

The deployed targets run with ``deadline_ms = 10000``, enclave pings every 30 s and the stores'
timers (the sqlite cells' flush, the polls for other replicas' changes) every 10 s: under
valgrind a call takes tens of milliseconds, the count of a request's path does not depend on its
deadline, and work done on a timer, not per request, stays out of the per-request figure.
Before the measured requests the target sits idle for a few seconds with counting on: its
background work per second (timers, polls, the audit writer's rests) is subtracted from the
measured window, so the table is the requests' own work. Results: ``results/instructions.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import _configs, _procs
from swqos_dev import devstack

RESULTS = Path(__file__).resolve().parent / "results"
VALGRIND = shutil.which("valgrind")
IDLE_S = 4.0


class Counted:
    """A process under callgrind: zero its counters, dump them, read the totals per thread."""

    def __init__(self, name: str, argv: list[str], out: Path, log: Path, *, cwd: Path = _procs.REPO) -> None:
        self.name, self.out = name, out
        out.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [VALGRIND or "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", "--separate-threads=yes",
             "--dump-instr=no", "--dump-line=no", *argv],
            cwd=cwd, env=_procs.env(), stdout=open(log, "ab"), stderr=subprocess.STDOUT)

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.proc.pid)], check=True, capture_output=True, timeout=120)

    def window(self, label: str, work: Callable[[], Any]) -> tuple[dict[int, int], float]:
        """Instructions per thread (1 = the main thread, where the event loop runs) during ``work()``."""
        self._control("-z")
        t0 = time.monotonic()
        work()
        self._control("-d", label)
        seconds = time.monotonic() - t0
        return {int(f.name.rsplit("-", 1)[1]): total for f, total in self.dumps(label).items()}, seconds

    def dumps(self, label: str) -> dict[Path, int]:
        """The files of the last dump named ``label`` (one per thread), with their totals."""
        end = time.monotonic() + 30
        trigger = f"Trigger: dump {label}\n"
        while time.monotonic() < end:
            found: dict[Path, int] = {}
            for f in self.out.glob(f"cg.{self.proc.pid}.*"):
                head = f.read_text(errors="replace")[:4000]
                if trigger in head:
                    found[f] = next(int(line.split()[1]) for line in head.splitlines() if line.startswith("summary:"))
            if found:
                return found
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: callgrind wrote no dump {label!r}")

    def stop(self) -> None:
        _procs.stop(self.proc)


def per_request(target: Counted, work: Callable[[], Any], n: int, label: str = "busy") -> dict[str, float]:
    """Instructions per request in the event-loop thread and the whole process while ``work()``
    sends ``n`` requests, with the target's idle background rate removed."""
    idle, idle_s = target.window(f"idle-{label}", lambda: time.sleep(IDLE_S))
    busy, busy_s = target.window(label, work)
    rate = {t: v / idle_s for t, v in idle.items()}
    loop = busy.get(1, 0) - rate.get(1, 0) * busy_s
    total = sum(busy.values()) - sum(rate.values()) * busy_s
    return {"loop": round(loop / n), "process": round(total / n),
            "background_per_request": round(sum(rate.values()) * busy_s / n), "requests": n}


def proxy_config(dev: devstack.DevDir, root: Path, name: str, redis: Any) -> Path:
    data = _configs.deployed(dev, root)
    if name == "no_ops":
        data = _configs.without_ops(data)
    elif name == "memory":
        data["swqos"]["plugins"].remove("state")
        data["layers"].pop("store")
        data["pipeline"]["store"] = "memory"
    elif name == "redis":
        data["layers"]["store"] = {"redis": redis.settings(sync_interval=10.0, grace_seconds=30.0, timeout_ms=5000)}
        data["pipeline"]["store"] = "redis"
    else:
        data["layers"]["store"]["sqlite"].update({"cells_flush_interval": 10.0, "sync_interval": 10.0})
    data["proxy"].update({"deadline_ms": 10_000, "enclave_ping_interval": 30.0})
    path = root / f"proxy-{name}.toml"
    devstack.write_toml(path, data)
    return path


def proxies(root: Path, n: int) -> dict[str, Any]:
    from benchmarks._stages import low_s_token
    from swqos_client import SignerClient, TlsTrust
    from swqos_core.enclave.child import start_enclave_process
    from swqos_state.testing import RedisServer, available
    from swqos_testing.payloads import valid_cv

    dev = devstack.prepare(root / "dev")
    token = low_s_token(lambda: devstack.mint_dev_token(dev, "bench-trader", ttl=900))
    trust = TlsTrust(ca_pem=dev.ca.read_bytes(), server_name="localhost")
    payload = valid_cv()
    enclave = start_enclave_process(dev.enclave_config, root / "enclave.log")
    redis = RedisServer(root / "redis") if available() else None
    names = ["echo", "no_ops", "deployed", "memory", *(["redis"] if redis else [])]
    out: dict[str, Any] = {} if redis else {"redis": {"skipped": "redis-server is not installed"}}
    try:
        if redis:
            redis.start()
        for name in names:
            portfile = root / f"{name}.port"
            if name == "echo":
                argv = [sys.executable, "-m", "benchmarks._echo", str(dev.tls_cert), str(dev.tls_key), str(portfile)]
            else:
                cfg = proxy_config(dev, root / name, name, redis)
                argv = [sys.executable, "-m", "benchmarks._proxy", str(cfg), str(portfile), str(root / f"{name}.json")]
            target = Counted(name, argv, root / "cg" / name, root / f"{name}.log")
            try:
                port = _procs.wait_port(portfile, target.proc, timeout=600)
                client = SignerClient(f"127.0.0.1:{port}", token=token, trust=trust, timeout=120.0)
                for _ in range(20):  # connections, caches, the code paths' first runs
                    client.sign_certificate_verify(payload)
                out[name] = per_request(target, lambda c=client: [c.sign_certificate_verify(payload) for _ in range(n)], n)
                print(f"  {name:9} {out[name]['loop']:>10,} loop {out[name]['process']:>10,} process", flush=True)
            finally:
                target.stop()
    finally:
        _procs.stop(enclave)
        if redis:
            redis.stop()
    return out


def enclave(root: Path, n: int) -> dict[str, Any]:
    """The enclave signer alone: instructions per SIGN answered, one at a time and ten at a time."""
    from swqos_core.enclave.client import EnclaveClient
    from swqos_core.state import ServiceState
    from swqos_testing.payloads import valid_cv

    dev = devstack.prepare(root / "enclave-dev")
    target = Counted("enclave", [sys.executable, "-m", "swqos_core.cli", "enclave", "--config", str(dev.enclave_config)],
                     root / "cg" / "enclave", root / "enclave-counted.log")
    payload = valid_cv()

    async def measure() -> dict[str, Any]:
        end = time.monotonic() + 600
        while not dev.socket.exists():
            if target.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("the enclave did not start under valgrind; see enclave-counted.log")
            await asyncio.sleep(0.2)
        client = EnclaveClient(f"unix://{dev.socket}", ServiceState("bench"), ping_interval=30, connect_timeout=60)
        await client.start()
        try:
            while client._writer is None:  # connected, and the enclave said who it is
                await asyncio.sleep(0.1)
            for _ in range(20):
                await client.sign(payload, 1)
            loop = asyncio.get_running_loop()
            result: dict[str, Any] = {}
            async def together(b: int) -> None:
                await asyncio.gather(*(client.sign(payload, 1) for _ in range(b)))

            for batch in (1, 10):
                def work(b: int = batch) -> None:  # in a thread: callgrind_control blocks
                    for _ in range(n // b):
                        asyncio.run_coroutine_threadsafe(together(b), loop).result()
                got = await asyncio.to_thread(per_request, target, work, n // batch * batch, f"batch{batch}")
                result[f"batch_{batch}"] = {"per_signature": got["process"], "signatures": got["requests"]}
            result["ed25519_share"] = ed25519_share(target.dumps("batch1"))
            return result
        finally:
            await client.close()

    try:
        return asyncio.run(measure())
    finally:
        target.stop()


def ed25519_share(dumps: dict[Path, int]) -> float | None:
    """Of the enclave's instructions in a window, the share inside libsodium's ``crypto_sign``."""
    annotate = shutil.which("callgrind_annotate")
    main_thread = [f for f in dumps if f.name.endswith("-01")]
    if not main_thread or annotate is None:
        return None
    text = subprocess.run([annotate, "--inclusive=yes", "--threshold=100", str(main_thread[0])], capture_output=True,
                          text=True, timeout=120).stdout
    total = sign = None
    for line in text.splitlines():
        first = line.split(maxsplit=1)[0] if line.strip() else ""
        if not first.replace(",", "").isdigit():
            continue
        if "PROGRAM TOTALS" in line:
            total = int(first.replace(",", ""))
        elif ":crypto_sign [" in line and sign is None:
            sign = int(first.replace(",", ""))
    return round(sign / total, 3) if sign and total else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    ap.add_argument("--out", type=Path, help="where the JSON goes (default: results/instructions.json)")
    args = ap.parse_args()
    out = args.out or RESULTS / ("instructions-quick.json" if args.quick else "instructions.json")
    if VALGRIND is None or shutil.which("callgrind_control") is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"skipped": "valgrind is not installed (apt-get install valgrind)"}) + "\n")
        print("valgrind is not installed (apt-get install valgrind): nothing counted")
        return 0
    n = 40 if args.quick else 200
    with tempfile.TemporaryDirectory(prefix="swqos-bench-instructions-") as tmp:
        root = Path(tmp)
        print(f"instructions per signed request, {n} requests one at a time, under callgrind:", flush=True)
        result: dict[str, Any] = {"requests": n, "proxies": proxies(root, n)}
        result["enclave"] = enclave(root, n)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    p = result["proxies"]
    echo = p["echo"]["loop"]
    print(f"{'target':9} {'loop':>10} {'process':>10} {'loop / echo':>12}")
    for k, v in p.items():
        if "loop" in v:
            print(f"{k:9} {v['loop']:>10,} {v['process']:>10,} {v['loop'] / echo:>12.2f}")
    e = result["enclave"]
    print(f"enclave: {e['batch_1']['per_signature']:,} per signature alone, {e['batch_10']['per_signature']:,} "
          f"in batches of ten; Ed25519 (libsodium) {e['ed25519_share']} of them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
