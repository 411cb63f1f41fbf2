"""``python -m benchmarks.workers [--quick] [--rounds N] [--round-s S]``: ``[proxy] workers`` 1 vs 2.

Two real ``swqos serve --config`` processes on one enclave child: one with ``workers = 1`` (a plain
proxy), one supervisor with ``workers = 2`` (two worker processes on one SO_REUSEPORT port). Both
use the dev stack's plugins (JWT auth, the TLS CertificateVerify matcher, the GCRA limiter with
loose quotas) and the ``sqlite`` store, because ``workers > 1`` needs a shared store: the only
difference between the two is the worker count. Closed-loop load from two load processes
(``benchmarks._load``, 8 connections each, so the kernel's 4-tuple hash spreads them over the
workers), interleaved rounds in alternating order (``benchmarks._rounds``), min and median.

Beside the throughput: server CPU per request (all worker processes together, and the enclave),
read from /proc. On a 2-core machine the load generator, the enclave and the workers share the
two cores, so this shows the ceiling of this machine, not the scaling of a larger host: see
docs/operations.md, "Workers". Results go to ``benchmarks/results/workers.json``
(``workers-no-limiter.json`` with ``--no-limiter``: no store write per request).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _load, _procs, _report, _rounds
from benchmarks._stages import low_s_token
from swqos_core.enclave.child import start_enclave_process  # first: swqos_core pins TLS 1.3 before grpc
from swqos_dev import devstack
from swqos_testing.configs import merge
from swqos_testing.processes import children

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = ("workers_1", "workers_2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Target:
    def __init__(self, name: str, workers: int, dev: devstack.DevDir, tmp: Path, without: list[str]) -> None:
        self.name, self.workers = name, workers
        self.port = free_port()
        data = devstack.proxy_config(dev, f"127.0.0.1:{self.port}", without=without)
        data = merge(data, {
            "swqos": {"plugins": [*data["swqos"]["plugins"], "state"]},
            "proxy": {"workers": workers},
            "pipeline": {"store": "sqlite"},
            "layers": {"store": {"sqlite": {"path": str(tmp / f"{name}.sqlite3")}}},
        })
        self.config = tmp / f"{name}.toml"
        devstack.write_toml(self.config, data)
        self.log = tmp / f"{name}.log"
        self.proc = _procs.spawn("swqos_core.cli", "serve", "--config", str(self.config), log=self.log)
        ready = f"{workers} workers serving on" if workers > 1 else "host-proxy listening on"
        end = time.monotonic() + 60
        while ready not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"{name} did not start; see {self.log}")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        return sorted(children(self.proc.pid)) if self.workers > 1 else [self.proc.pid]


def cpu(pids: list[int]) -> float:
    return sum(_procs.cpu_seconds(pid) for pid in pids)


def measure(pool: Any, t: Target, enclave_pid: int, jobs: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    pool.map(_load.run_job, [j | {"duration": warmup_s, "concurrency": 4} for j in jobs])
    pids = t.pids()
    proxy0, enclave0 = cpu(pids), _procs.cpu_seconds(enclave_pid)
    parts = pool.map(_load.run_job, jobs)
    proxy_s, enclave_s = cpu(pids) - proxy0, _procs.cpu_seconds(enclave_pid) - enclave0
    codes: dict[str, int] = {}
    lat: list[float] = []
    for part in parts:
        lat += part["lat"]
        for k, v in part["codes"].items():
            codes[k] = codes.get(k, 0) + v
    res = _report.summarize(lat, codes, max(p["elapsed"] for p in parts))
    n = max(res["ok"], 1)
    res["cpu_us_per_request"] = {"proxy_processes": round(proxy_s / n * 1e6, 1),
                                 "enclave": round(enclave_s / n * 1e6, 1)}
    res["failed"] = res["requests"] - res["ok"]
    return res


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s (a smoke run, not a measurement)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 6)")
    parser.add_argument("--round-s", type=float, default=None, help="seconds of load per round (default 4)")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--no-limiter", dest="limiter", action="store_false",
                        help="without the rate limiter: no store write per request (default: with it)")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight per load process")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 6)
    round_s = args.round_s or (1.0 if args.quick else 4.0)
    tmp = Path(tempfile.mkdtemp(prefix="swqos-bench-workers-"))
    env_run = tmp / "run"
    env_run.mkdir(mode=0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(env_run)  # the supervisors' lock files, inherited by the proxies
    dev = devstack.prepare(tmp / "dev")
    devstack.write_toml(dev.enclave_config, devstack.enclave_config(dev))
    enclave = start_enclave_process(dev.enclave_config, tmp / "enclave.log")
    procs = [enclave]
    try:
        end = time.monotonic() + 20
        while not dev.socket.exists() and time.monotonic() < end:
            time.sleep(0.05)
        targets = {}
        for name, workers in zip(TARGETS, (1, 2), strict=True):
            targets[name] = Target(name, workers, dev, tmp, [] if args.limiter else ["ratelimit"])
            procs.append(targets[name].proc)
        token = low_s_token(lambda: devstack.mint_dev_token(dev, "bench-trader", ttl=900))
        ca = dev.ca.read_bytes()
        results: list[dict[str, dict[str, Any]]] = []
        with multiprocessing.get_context("spawn").Pool(args.load_processes) as pool:
            for i, order in enumerate(_rounds.orders(TARGETS, rounds)):
                got = {}
                for name in order:
                    t = targets[name]
                    job = {"target": f"127.0.0.1:{t.port}", "ca_pem": ca, "mode": "closed", "token": token,
                           "concurrency": args.concurrency, "channels": 8, "duration": round_s, "warmup": 0.0}
                    got[name] = measure(pool, t, enclave.pid, [job] * args.load_processes, 0.3)
                results.append(got)
                print(f"round {i + 1}/{rounds}: " + "  ".join(
                    f"{n} {got[n]['throughput_rps']:.0f}/s p99 {got[n]['p99_ms']} ms {got[n]['codes']}"
                    for n in TARGETS), flush=True)
    finally:
        for proc in reversed(procs):
            _procs.stop(proc)
    summary: dict[str, Any] = {}
    for name in TARGETS:
        rs = [r[name] for r in results]
        summary[name] = {
            "throughput_rps": _rounds.spread([r["throughput_rps"] for r in rs], 1),
            "p50_ms": _rounds.spread([r["p50_ms"] for r in rs]),
            "p99_ms": _rounds.spread([r["p99_ms"] for r in rs]),
            "proxy_cpu_us_per_request": _rounds.spread([r["cpu_us_per_request"]["proxy_processes"] for r in rs], 1),
            "enclave_cpu_us_per_request": _rounds.spread([r["cpu_us_per_request"]["enclave"] for r in rs], 1),
            "failed_calls": sum(r["failed"] for r in rs),
        }
    summary["workers_2_over_workers_1"] = _rounds.spread(
        _rounds.paired(results, "workers_1", "workers_2", "throughput_rps", _rounds.ratio))
    out = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count(),
           "rounds": rounds, "round_s": round_s, "limiter": args.limiter, "load_processes": args.load_processes,
           "concurrency": args.concurrency, "summary": summary, "rounds_detail": results}
    RESULTS.mkdir(exist_ok=True)
    if not args.quick:
        (RESULTS / f"workers{'' if args.limiter else '-no-limiter'}.json").write_text(json.dumps(out, indent=2))
    print(f"\n{rounds} interleaved rounds of {round_s} s, {args.load_processes} load processes x "
          f"{args.concurrency} in flight, {os.cpu_count()} cores, limiter {'on' if args.limiter else 'off'}")
    print(f"{'':10} {'rps min':>9} {'rps med':>9} {'p99 med':>8} {'proxy us/req':>13} {'enclave us/req':>15} failed")
    for name in TARGETS:
        s = summary[name]
        print(f"{name:10} {s['throughput_rps']['min']:>9} {s['throughput_rps']['median']:>9} "
              f"{s['p99_ms']['median']:>8} {s['proxy_cpu_us_per_request']['median']:>13} "
              f"{s['enclave_cpu_us_per_request']['median']:>15} {s['failed_calls']}")
    ratio = summary["workers_2_over_workers_1"]
    print(f"workers 2 / workers 1 throughput, per round: min {ratio['min']}, median {ratio['median']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
