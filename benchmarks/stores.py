"""``python -m benchmarks.stores [--quick]``: the state stores side by side, in one run.

Three host-proxies on one enclave, each in its own process, each the deployed configuration
(``deploy/proxy.toml``'s plugins and services, audit log and metrics on) with one store: ``memory``,
``sqlite`` (as deployed) and ``redis`` (a loopback redis-server with an ACL user and a password).
Two load processes pace 400 signatures a second (the budget's phase: every ``take`` a whole
round trip, as at a validator's normal rate), then run a closed loop (saturation). Rounds are
interleaved in alternating order (memory, sqlite, redis, then redis, sqlite, memory) so a
noisy neighbour or a CPU frequency change hits every store alike. Per store: latency p50 / p99
over real gRPC + TLS 1.3, and the host-proxy's own CPU per request (read from /proc: its event
loop and the whole process; the clients are other processes). The cost over memory is the median
(and min) of per-round differences, each round against the memory round beside it.

Then the stores alone: ``take`` of the six cells an IPv6 client costs, per call (wall and CPU);
a bare Redis ``PING`` on the request path's lane and through redis-py (the floor under any round
trip here); and Redis sizing: bytes of server memory per GCRA cell and per policy record.

Results go to ``benchmarks/results/stores.json`` and are printed as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _configs, _load, _procs, _report, _rounds
from benchmarks._stages import low_s_token
from swqos_core.enclave.child import start_enclave_process
from swqos_core.store import Cell, MemoryStateStore
from swqos_dev import devstack
from swqos_state.sync import SyncSettings
from swqos_state.testing import RedisServer, available

RESULTS = Path(__file__).resolve().parent / "results"
LOOSE = {"count": 100_000_000, "period": 1.0, "burst": 100_000_000}
STORES = ("memory", "sqlite", "redis")


def proxy_config(dev: devstack.DevDir, store: str, redis: RedisServer, root: Path) -> Path:
    """The deployed configuration (benchmarks/_configs.py: deploy/proxy.toml minus the CDN, audit
    log and metrics on) with its state store swapped; its files (state, audit, admin socket) under
    ``root``. Redis is the loopback server with its ACL user and password, at the default sync
    interval and grace."""
    data = _configs.deployed(dev, root)
    if store == "memory":
        data["swqos"]["plugins"] = [p for p in data["swqos"]["plugins"] if p != "state"]
        data["layers"].pop("store")
    elif store == "redis":
        data["layers"]["store"] = {"redis": redis.settings(sync_interval=SyncSettings.sync_interval,
                                                           grace_seconds=SyncSettings.grace_seconds)}
    data["pipeline"]["store"] = store
    path = root / f"proxy-{store}.toml"
    devstack.write_toml(path, data)
    return path


#: The load of each phase (benchmarks/_load.py jobs, one per load process): the paced phase is the
#: budget's (issue 14: "per request"), at issue 16's fixed rate; the closed loop shows saturation.
PHASES: dict[str, dict[str, Any]] = {
    "paced_400": {"processes": 2, "mode": "rate", "rate": 200.0, "concurrency": 1},
    "closed": {"processes": 2, "mode": "closed", "concurrency": 32},
}


def _job(t: _procs.Target, ca: bytes, token: str, seconds: float, phase: dict[str, Any]) -> dict[str, Any]:
    return {"target": t.addr, "ca_pem": ca, "duration": seconds, "warmup": 0.0, "token": token,
            "mode": phase["mode"], "rate": phase.get("rate"), "concurrency": phase["concurrency"]}


def full_stack(root: Path, redis: RedisServer, rounds: int, seconds: float) -> dict[str, Any]:
    """The deployed stack once per store, each host-proxy in its own process on one enclave.

    Two phases, each of ``rounds`` rounds of ``seconds`` per store (:data:`PHASES`): two load
    processes pacing 400 signatures a second in all (latency from each request's scheduled send
    time), then a closed loop of 2 x 32 in flight. Rounds are interleaved in alternating order
    (memory, sqlite, redis, then redis, sqlite, memory), so a noisy neighbour or a CPU frequency
    change hits every store alike. Per store: p50 / p99, and the host-proxy's CPU per request read
    from /proc (its event-loop thread and the whole process); the costs over memory are per-round
    differences against the memory round beside it, reported as median and min.
    """
    dev = devstack.prepare(root / "dev")
    token = low_s_token(lambda: devstack.mint_dev_token(dev, "bench-trader", ttl=900))
    ca = dev.ca.read_bytes()
    enclave = start_enclave_process(dev.enclave_config, root / "enclave.log")
    procs = [enclave]
    out: dict[str, Any] = {}
    try:
        end = time.monotonic() + 30
        while not dev.socket.exists() and time.monotonic() < end:
            time.sleep(0.05)
        targets = {}
        for store in STORES:
            cfg = proxy_config(dev, store, redis, _mkdir(root / store))
            portfile = root / f"{store}.port"
            procs.append(_procs.spawn("benchmarks._proxy", str(cfg), str(portfile), str(root / f"{store}.stats.json"),
                                      log=root / f"proxy-{store}.log"))
            targets[store] = _procs.Target(store, procs[-1], portfile, enclave.pid)
        with multiprocessing.get_context("spawn").Pool(max(p["processes"] for p in PHASES.values())) as pool:
            for name, phase in PHASES.items():
                runs: dict[str, list[dict[str, Any]]] = {s: [] for s in STORES}
                for i in range(rounds):
                    for store in STORES if i % 2 == 0 else STORES[::-1]:
                        t = targets[store]
                        warm = _job(t, ca, token, 0.3, {"mode": "closed", "concurrency": 4})
                        pool.map(_load.run_job, [warm] * phase["processes"])  # channels, TLS, caches
                        t.meter.start()
                        got = pool.map(_load.run_job, [_job(t, ca, token, seconds, phase)] * phase["processes"])
                        cpu = t.meter.stop()
                        run = _report.summarize([x for g in got for x in g["lat"]],
                                                dict(sum((collections.Counter(g["codes"]) for g in got),
                                                         collections.Counter())),
                                                max(g["elapsed"] for g in got))
                        n = max(run["requests"], 1)
                        runs[store].append(run | {"cpu_us_per_request": {k: v / n * 1e6 for k, v in cpu.items()}})
                out[name] = summarize_stores(runs)
    finally:
        for proc in reversed(procs):
            _procs.stop(proc)
    # The budget's figures (issue 14) are the paced phase's; the report reads them here.
    return out["paced_400"] | {"phases": out}


def summarize_stores(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for store, rs in runs.items():
        out[store] = {"answered": sum(r["ok"] for r in rs), "refused": sum(r["requests"] - r["ok"] for r in rs),
                      "p50_ms": _rounds.spread([r["p50_ms"] for r in rs]),
                      "p99_ms": _rounds.spread([r["p99_ms"] for r in rs]),
                      "cpu_us_per_request": {k: _rounds.spread([r["cpu_us_per_request"][k] for r in rs], 1)
                                             for k in rs[0]["cpu_us_per_request"]}}
    base = runs["memory"]
    for store in ("sqlite", "redis"):
        pairs = list(zip(runs[store], base, strict=True))  # each round against the memory round beside it
        d_proc = [r["cpu_us_per_request"]["process"] - m["cpu_us_per_request"]["process"] for r, m in pairs]
        d_loop = [r["cpu_us_per_request"]["loop"] - m["cpu_us_per_request"]["loop"] for r, m in pairs]
        d_p50 = [r["p50_ms"] - m["p50_ms"] for r, m in pairs]
        out[store] |= {"cpu_over_memory_us": round(statistics.median(d_proc), 1),
                       "cpu_over_memory_us_min": round(min(d_proc), 1),
                       "loop_cpu_over_memory_us": round(statistics.median(d_loop), 1),
                       "loop_cpu_over_memory_us_min": round(min(d_loop), 1),
                       "p50_over_memory_ms": round(statistics.median(d_p50), 3),
                       "p50_over_memory_ms_min": round(min(d_p50), 3)}
    return out


async def store_take(root: Path, redis: RedisServer, calls: int) -> dict[str, dict[str, float]]:
    from swqos_state.redis_store import RedisSettings
    from swqos_state.redis_store import build as build_redis
    from swqos_state.sqlite import SqliteSettings
    from swqos_state.sqlite import build as build_sqlite

    class Ctx:
        config_dir, state, logger, process, workers = root, None, None, "proxy", 1

        @staticmethod
        def path(p):
            p = Path(p)
            return p if p.is_absolute() else root / p

    import logging

    Ctx.logger = logging.getLogger("bench")
    stores = {
        "memory": MemoryStateStore(),
        "sqlite": build_sqlite(SqliteSettings(path=root / "take.sqlite3"), Ctx),
        "redis": build_redis(RedisSettings(**redis.settings()), Ctx),
    }
    out = {}
    for name, store in stores.items():
        await store.start()
        try:
            cells = [Cell(f"rl:{lbl}:{i}", 1000, 10**12, lbl) for i, lbl in enumerate(
                ("address_rate", "address_handshakes", "address_rate_56", "address_handshakes_56",
                 "address_rate_48", "address_handshakes_48"))]
            for _ in range(100):
                await store.take(cells)
            t0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(calls):
                await store.take(cells)
            out[name] = {"wall_us": round((time.perf_counter() - t0) / calls * 1e6, 1),
                         "cpu_us": round((time.thread_time() - c0) / calls * 1e6, 1)}
            if name == "redis":
                # The floor under any store round trip on this machine: a bare PING, on the lane the
                # request path uses and through redis-py (which the lane replaces there).
                lane_ping = functools.partial(store._lane.call, "PING")
                for label, ping in (("ping_lane", lane_ping), ("ping_redis_py", store.r.ping)):
                    t0, c0 = time.perf_counter(), time.thread_time()
                    for _ in range(calls):
                        await ping()
                    out[label] = {"wall_us": round((time.perf_counter() - t0) / calls * 1e6, 1),
                                  "cpu_us": round((time.thread_time() - c0) / calls * 1e6, 1)}
        finally:
            await store.close()
    return out


def redis_sizing(root: Path, n: int) -> dict[str, float]:
    """Server bytes per GCRA cell and per policy record, on a server without an ACL (INFO, MEMORY)."""
    import subprocess

    import redis as redis_py

    from swqos_state.testing import REDIS_SERVER, free_port

    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = redis_py.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis_py.ConnectionError:
                time.sleep(0.05)
        base = r.info("memory")["used_memory"]
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.set(f"swqos:c:rl:address_handshakes:{(1 << 128) | (0x20010DB8 << 32) | i}", 1_796_000_000_000_000 + i,
                     px=60_000)
        pipe.execute()
        cells = r.info("memory")["used_memory"]
        rec = '{"version":1,"at":1796000000.123456,"namespace":"auth_jwt.revoked","key":"sub:trader-%d",' \
              '"value":true,"actor":"token:ops (t1)"}'
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.hset("swqos:policy", f"auth_jwt.revoked\x1fsub:trader-{i}", rec % i)
        pipe.execute()
        records = r.info("memory")["used_memory"]
        return {"bytes_per_cell": round((cells - base) / n, 1), "bytes_per_policy_record": round((records - cells) / n, 1)}
    finally:
        proc.terminate()
        proc.wait(5)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = ap.parse_args()
    if not available():
        print("redis-server is not installed (apt-get install redis-server): the comparison needs it")
        return 2
    rounds, seconds, calls = (2, 1.0, 500) if args.quick else (8, 3.0, 5000)
    with tempfile.TemporaryDirectory(prefix="swqos-bench-stores-") as tmp:
        root = Path(tmp)
        redis = RedisServer(root / "redis")
        redis.start()
        try:
            result = {
                "full_stack": full_stack(root, redis, rounds, seconds),
                "take_six_cells_us": asyncio.run(store_take(root, redis, calls)),
                "redis_sizing": redis_sizing(_mkdir(root / "sizing"), 20_000 if args.quick else 100_000),
            }
        finally:
            redis.stop()
    result["plan"] = {"rounds": rounds, "round_s": seconds, "take_calls": calls, "quick": args.quick}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stores.json").write_text(json.dumps(result, indent=2) + "\n")
    for phase, f_all in result["full_stack"]["phases"].items():
        print(f"{phase}: {'store':8} {'p50 ms':>8} {'p99 ms':>8} {'proxy CPU us/req':>17} "
              f"{'over memory: CPU us':>20} {'p50 ms':>15}   (medians of rounds; over memory: median / min)")
        for s in STORES:
            f = f_all[s]
            over = (f"{f['cpu_over_memory_us']:9.1f} / {f['cpu_over_memory_us_min']:<8.1f} "
                    f"{f['p50_over_memory_ms']:6.3f} / {f['p50_over_memory_ms_min']:<6.3f}" if s != "memory" else "")
            print(f"{'':{len(phase) + 2}}{s:8} {f['p50_ms']['median']:8.3f} {f['p99_ms']['median']:8.3f} "
                  f"{f['cpu_us_per_request']['process']['median']:17.1f} {over}")
    for s in STORES:
        t = result["take_six_cells_us"][s]
        print(f"take of six cells alone, {s}: {t['wall_us']:.1f} us wall, {t['cpu_us']:.1f} us CPU")
    for label in ("ping_lane", "ping_redis_py"):
        t = result["take_six_cells_us"][label]
        print(f"a bare PING ({label.removeprefix('ping_')}): {t['wall_us']:.1f} us wall, {t['cpu_us']:.1f} us CPU")
    print(f"redis sizing: {result['redis_sizing']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
