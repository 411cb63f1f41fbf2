"""Hostile scenario: an Argon2 flood against a known API-token id next to a well-behaved JWT trader.

``python -m benchmarks.hostile_argon2 [--flood-seconds 10] [--flood-rate 200] [--set KEY=JSON ...]``

Loopback only, bounded in time (a hard limit of about flood + 60 s). A dev stack in a temporary
directory: the enclave and the host-proxy (``benchmarks._proxy``) each in their own process, the
``test_header`` client-IP resolver (``allow_test_plugins``) so one loopback client can claim any
address. The flooder, in a third process, sends wrong secrets for the one API-token id (ids are
public) from a new address each time at ``--flood-rate`` per second; the trader signs at 20/s with
a cached JWT before, during and after the flood. Reported: the trader's success rate and latency
(p50/p99) during the flood, the flood's outcomes, and the proxy's RSS before, during (peak) and
5 s after the flood. ``--set`` overrides ``[layers.auth.api_token]`` settings (e.g.
``--set return_memory=false``) to see what each defence contributes. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

import swqos_core  # noqa: E402, F401 (before grpc: it sets the TLS 1.3 cipher suites grpc reads once)

# isort: split
import grpc  # noqa: E402

TRADER_RATE = 20.0
TRADER_IP = "198.51.100.7"
TRADER_TIMEOUT = 1.0
BEFORE_S = 3.0
AFTER_S = 5.0


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def _stub(target: str, ca: bytes):
    from swqos_proto import SIGN_METHOD, signer_pb2

    ch = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca),
                                 options=[("grpc.ssl_target_name_override", "localhost")])
    stub = ch.unary_unary(SIGN_METHOD, request_serializer=signer_pb2.SignCertificateVerifyRequest.SerializeToString,
                          response_deserializer=signer_pb2.SignCertificateVerifyResponse.FromString)
    return ch, stub


# --- the flooder (its own process) -----------------------------------------------------------


async def flood(target: str, ca: bytes, token_id: str, seconds: float, rate: float, max_in_flight: int) -> dict:
    from swqos_auth_jwt.strict import b64url_encode
    from swqos_proto import signer_pb2
    from swqos_testing.payloads import valid_cv

    ch, stub = _stub(target, ca)
    req = signer_pb2.SignCertificateVerifyRequest(payload=valid_cv())
    outcomes: Counter[str] = Counter()
    in_flight = asyncio.Semaphore(max_in_flight)
    rng = random.Random(13)

    async def one() -> None:
        wrong = f"swqat_{token_id}_{b64url_encode(rng.randbytes(32))}"
        addr = f"100.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"  # a new address each time
        md = (("authorization", f"Bearer {wrong}"), ("x-test-client-ip", addr))
        try:
            await stub(req, metadata=md, timeout=2.0)
            outcomes["OK"] += 1  # would be a forged credential: must stay 0
        except grpc.aio.AioRpcError as exc:
            outcomes[f"{exc.code().name}: {exc.details()}"] += 1
        finally:
            in_flight.release()

    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = set()
    n = 0
    while (now := loop.time()) < start + seconds:
        due = start + n / rate
        if due > now:
            await asyncio.sleep(due - now)
        if in_flight.locked():
            outcomes["not sent: client at max in flight"] += 1
            n += 1
            continue
        await in_flight.acquire()
        t = asyncio.create_task(one())
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.wait(tasks, timeout=5)
    await ch.close()
    return {"offered": n, "outcomes": dict(outcomes.most_common())}


# --- the trader and the measurement (the main process) ----------------------------------------


async def trader_and_watch(target: str, ca: bytes, token: str, proxy_pid: int, flood_cmd: list[str],
                           flood_seconds: float) -> dict:
    from swqos_proto import signer_pb2
    from swqos_testing.payloads import valid_cv

    ch, stub = _stub(target, ca)
    req = signer_pb2.SignCertificateVerifyRequest(payload=valid_cv())
    md = (("authorization", f"Bearer {token}"), ("x-test-client-ip", TRADER_IP))
    warm = 0
    for _ in range(40):  # warm: connection, cache entry (a cold first call may miss the 100 ms deadline)
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub(req, metadata=md, timeout=5.0)
            warm += 1
        if warm >= 5:
            break
    if warm < 5:
        raise RuntimeError("the trader could not sign while the proxy was idle; see the proxy log")
    phase = {"name": "before"}
    samples: dict[str, list[tuple[str, float, float]]] = {"before": [], "during": [], "after": []}
    rss: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def call(name: str) -> None:
        t0 = loop.time()
        try:
            await stub(req, metadata=md, timeout=TRADER_TIMEOUT)
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        samples[name].append((code, (loop.time() - t0) * 1000, t0 - phase.get("since", t0)))

    async def trader() -> None:
        start, n, pending = loop.time(), 0, set()
        while not stop.is_set():
            due = start + n / TRADER_RATE
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            t = asyncio.create_task(call(phase["name"]))
            pending.add(t)
            t.add_done_callback(pending.discard)
            n += 1
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def watch() -> None:
        while not stop.is_set():
            rss[phase["name"]].append(_rss_mb(proxy_pid))
            await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(trader()), asyncio.create_task(watch())]
    await asyncio.sleep(BEFORE_S)
    rss_before = _rss_mb(proxy_pid)
    load_before = os.getloadavg()[0]
    cpu0, t0 = _cpu_seconds(proxy_pid), loop.time()
    phase["name"], phase["since"] = "during", loop.time()
    flooder = await asyncio.create_subprocess_exec(*flood_cmd, stdout=subprocess.PIPE, cwd=REPO)
    try:
        out, _ = await asyncio.wait_for(flooder.communicate(), timeout=flood_seconds + 30)
    except TimeoutError:
        flooder.kill()
        raise
    proxy_cpu = (_cpu_seconds(proxy_pid) - cpu0) / (loop.time() - t0)
    phase["name"] = "after"
    await asyncio.sleep(AFTER_S)
    rss_after = _rss_mb(proxy_pid)
    stop.set()
    await asyncio.gather(*tasks)
    await ch.close()

    def summary(s: list[tuple[str, float, float]]) -> dict:
        ok = [ms for code, ms, _ in s if code == "OK"]
        return {"calls": len(s), "success_rate": round(len(ok) / len(s), 4) if s else None,
                "codes": dict(Counter(code for code, _, _ in s)),
                "p50_ms": round(_pct(ok, 0.50), 2), "p99_ms": round(_pct(ok, 0.99), 2),
                "max_ms": round(max(ok), 2) if ok else None}

    during = samples["during"]
    per_second = {}
    for sec in range(int(flood_seconds + 0.999)):
        part = summary([x for x in during if sec <= x[2] < sec + 1])
        per_second[str(sec)] = {"ok": part["codes"].get("OK", 0), "calls": part["calls"], "p99_ms": part["p99_ms"]}
    return {
        "trader": {k: summary(samples[k]) for k in ("before", "during", "after")},
        "trader_during_per_second": per_second,
        "proxy_cpu_cores_during": round(proxy_cpu, 2),
        "loadavg_1m": {"before_flood": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "flood": json.loads(out or b"{}"),
        "proxy_rss_mb": {"before": round(rss_before, 1), "during_peak": round(max(rss["during"], default=0), 1),
                         "after_5s": round(rss_after, 1),
                         "growth_after_5s": round(rss_after - rss_before, 1)},
    }


def run(args: argparse.Namespace) -> dict:
    from benchmarks.__main__ import _spawn, _stop, _wait_port
    from swqos_auth_jwt.api_tokens import create_token
    from swqos_core.enclave.child import start_enclave_process
    from swqos_dev import devstack
    from swqos_testing.stack import merge

    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    with tempfile.TemporaryDirectory(prefix="swqos-hostile-") as td:
        tmp = Path(td)
        dev = devstack.prepare(tmp / "dev")
        store = tmp / "tokens.json"
        api_token, rec = create_token(store, "ops-bot", "trader")
        del api_token  # the holder's secret is not needed: only the public id is attacked
        proxy_cfg = merge(devstack.proxy_config(dev, "127.0.0.1:0", without=["ratelimit"]), {
            "swqos": {"plugins": ["auth_jwt", "testing"], "allow_test_plugins": True},
            "pipeline": {"client_ip": ["test_header"], "auth": ["jwt", "api_token"]},
            "layers": {"auth": {"api_token": {"store": str(store), "accept_roles": ["trader"], **overrides}}},
        })
        devstack.write_toml(dev.config, proxy_cfg)
        devstack.write_toml(dev.enclave_config, devstack.enclave_config(dev))
        procs: list[subprocess.Popen[bytes]] = []
        try:
            enclave = start_enclave_process(dev.enclave_config, tmp / "enclave.log")
            procs.append(enclave)
            end = time.monotonic() + 20
            while not dev.socket.exists() and time.monotonic() < end:
                time.sleep(0.05)
            proxy = _spawn("benchmarks._proxy", str(dev.config), str(tmp / "proxy.port"), str(tmp / "stats.json"),
                           log=tmp / "proxy.log")
            procs.append(proxy)
            target = f"127.0.0.1:{_wait_port(tmp / 'proxy.port', proxy)}"
            token = devstack.mint_dev_token(dev, "bench-trader", ttl=900)
            ca = dev.ca.read_bytes()
            flood_id = "0" * 16 if args.control_unknown_id else rec.id
            flood_cmd = [sys.executable, str(Path(__file__).resolve()), "--flooder", target, str(dev.ca), flood_id,
                         str(args.flood_seconds), str(args.flood_rate), str(args.flood_in_flight)]
            result = asyncio.run(asyncio.wait_for(
                trader_and_watch(target, ca, token, proxy.pid, flood_cmd, args.flood_seconds),
                timeout=args.flood_seconds + BEFORE_S + AFTER_S + 45))
        finally:
            for p in reversed(procs):
                _stop(p)
    result["settings"] = {"flood_seconds": args.flood_seconds, "flood_rate": args.flood_rate,
                          "flood_in_flight": args.flood_in_flight, "trader_rate": TRADER_RATE,
                          "api_token_overrides": overrides, "cpus": os.cpu_count(),
                          "control_unknown_id": args.control_unknown_id}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flood-seconds", type=float, default=10.0)
    ap.add_argument("--flood-rate", type=float, default=200.0, help="wrong-secret calls per second")
    ap.add_argument("--flood-in-flight", type=int, default=64, help="the flooder's cap on calls in flight")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override an [layers.auth.api_token] setting")
    ap.add_argument("--control-unknown-id", action="store_true",
                    help="control run: flood an id that does not exist (no Argon2 at all)")
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    ap.add_argument("--flooder", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.flooder:
        target, ca, tid, seconds, rate, in_flight = args.flooder
        signal.alarm(int(float(seconds)) + 20)  # bounded even if the parent is gone
        res = asyncio.run(flood(target, Path(ca).read_bytes(), tid, float(seconds), float(rate), int(in_flight)))
        print(json.dumps(res))
        return 0
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    d = result["trader"]["during"]
    with contextlib.suppress(TypeError):
        print(f"\ntrader during the flood: {d['success_rate'] * 100:.1f} % OK, p50 {d['p50_ms']} ms, "
              f"p99 {d['p99_ms']} ms; proxy RSS {result['proxy_rss_mb']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
