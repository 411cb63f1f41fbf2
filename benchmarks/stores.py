"""``python -m benchmarks.stores [--quick]``: the state stores side by side, in one run.

Three host-proxies on one enclave, one per store (``memory``, ``sqlite``, ``redis`` on a loopback
redis-server with an ACL user), each with the gcra limiter and the jwt authenticator, so every
signature costs the store its real round trips (one ``take`` before authentication, one after).
Rounds are interleaved in alternating order (memory, sqlite, redis, then redis, sqlite, memory)
so a noisy neighbour or a CPU frequency change hits every store alike. Per store: latency p50 /
p99 of sequential signatures over real gRPC + TLS 1.3, and this process's CPU per request (client
and proxy share the process; the client's share is the same for every store, so the differences
are the store's cost). The cost over memory is the median (and min) of per-round differences,
each round against the memory round beside it.

Then the stores alone: ``take`` of the six cells an IPv6 client costs, per call (wall and CPU);
a bare Redis ``PING`` on the request path's lane and through redis-py (the floor under any round
trip here); and Redis sizing: bytes of server memory per GCRA cell and per policy record.

Results go to ``benchmarks/results/stores.json`` and are printed as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._stages import low_s_token
from swqos_core import config  # first: swqos_core pins TLS 1.3 before grpc is imported
from swqos_core.server import start_proxy
from swqos_core.store import Cell, MemoryStateStore
from swqos_dev import devstack
from swqos_state.testing import RedisServer, available
from swqos_testing.configs import merge
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results"
LOOSE = {"count": 100_000_000, "period": 1.0, "burst": 100_000_000}
STORES = ("memory", "sqlite", "redis")


class Replica(Stack):
    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self.proxy is not None:
            await self.proxy.stop(None)


def proxy_config(dev: devstack.DevDir, store: str, redis: RedisServer, root: Path) -> Path:
    data = devstack.proxy_config(dev, "127.0.0.1:0", without=["ratelimit"])
    data["swqos"]["plugins"] = [*data["swqos"]["plugins"], "ratelimit", "state"]
    gcra = {k: LOOSE for k in ("address", "handshakes", "address_56", "address_48", "handshakes_56",
                                "handshakes_48", "trader", "trader_sustained")}
    layers: dict[str, Any] = {"rate_limit": {"gcra": gcra}}
    if store == "sqlite":
        layers["store"] = {"sqlite": {"path": str(root / "state.sqlite3")}}
    elif store == "redis":
        layers["store"] = {"redis": redis.settings(sync_interval=0.25, grace_seconds=2.0)}
    # A longer deadline than production's 100 ms: on a loaded 2-core machine a missed deadline
    # would measure the machine, not the store (refusals are still counted).
    data = merge(data, {"proxy": {"deadline_ms": 1000}, "pipeline": {"store": store, "rate_limit": ["gcra"]},
                        "layers": layers})
    path = root / f"proxy-{store}.toml"
    devstack.write_toml(path, data)
    return path


async def round_of(replica: Stack, token: str, n: int, payload: bytes,
                   errors: dict[str, int] | None = None) -> tuple[list[float], float]:
    """``n`` sequential signatures: latencies of the answered ones, CPU per request. A refusal (a
    deadline missed on a loaded machine) is counted in ``errors``, not hidden."""
    lat = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        r = await replica.sign(payload, token=token)
        if r.code.name == "OK":
            lat.append(time.perf_counter() - t0)
        elif errors is not None:
            errors[r.code.name] = errors.get(r.code.name, 0) + 1
        else:
            raise RuntimeError(f"sign failed during warm-up: {r.code} {r.details}")
    return lat, (time.process_time() - cpu0) / n


async def full_stack(root: Path, redis: RedisServer, rounds: int, per_round: int) -> dict[str, Any]:
    dev = devstack.prepare(root / "dev")
    devstack.write_toml(dev.enclave_config, devstack.enclave_config(dev))
    first = Replica(dev, dev.enclave_config)
    await first.start_enclave()
    replicas: dict[str, Stack] = {}
    try:
        for store in STORES:
            r = Replica(dev, dev.enclave_config)
            r.proxy = await start_proxy(config.load(proxy_config(dev, store, redis, root), process="proxy"))
            await r.wait_serving()
            replicas[store] = r
        token = low_s_token(lambda: first.token("bench-trader"))
        payload = valid_cv()
        for r in replicas.values():  # warm-up: connections, caches, scripts loaded
            await round_of(r, token, 50, payload, {})
        lat: dict[str, list[float]] = {s: [] for s in STORES}
        p50s: dict[str, list[float]] = {s: [] for s in STORES}
        cpu: dict[str, list[float]] = {s: [] for s in STORES}
        errors: dict[str, dict[str, int]] = {s: {} for s in STORES}
        for i in range(rounds):
            # Alternating order (memory, sqlite, redis, then redis, sqlite, memory) so neither a
            # warming nor a cooling machine favours one store.
            for store in STORES if i % 2 == 0 else STORES[::-1]:
                got, per = await round_of(replicas[store], token, per_round, payload, errors[store])
                lat[store] += got
                p50s[store].append(statistics.median(got) if got else float("nan"))
                cpu[store].append(per)
        out: dict[str, Any] = {}
        for store in STORES:
            q = statistics.quantiles(lat[store], n=100)
            out[store] = {"answered": len(lat[store]), "refused": errors[store], "p50_ms": round(q[49] * 1e3, 3),
                          "p99_ms": round(q[98] * 1e3, 3),
                          "cpu_us_per_request": round(statistics.median(cpu[store]) * 1e6, 1)}
        for store in ("sqlite", "redis"):
            # Paired by round: each round's store minus the memory round next to it, so a noisy
            # neighbour that slows one round slows both sides of its difference.
            d_cpu = [a - b for a, b in zip(cpu[store], cpu["memory"], strict=True)]
            d_p50 = [a - b for a, b in zip(p50s[store], p50s["memory"], strict=True)]
            out[store]["cpu_over_memory_us"] = round(statistics.median(d_cpu) * 1e6, 1)
            out[store]["cpu_over_memory_us_min"] = round(min(d_cpu) * 1e6, 1)
            out[store]["p50_over_memory_ms"] = round(statistics.median(d_p50) * 1e3, 3)
            out[store]["p50_over_memory_ms_min"] = round(min(d_p50) * 1e3, 3)
        return out
    finally:
        for r in replicas.values():
            await r.close()
        await first.kill_enclave()


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


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = ap.parse_args()
    if not available():
        print("redis-server is not installed (apt-get install redis-server): the comparison needs it")
        return 2
    rounds, per_round, calls = (4, 100, 500) if args.quick else (40, 100, 5000)
    with tempfile.TemporaryDirectory(prefix="swqos-bench-stores-") as tmp:
        root = Path(tmp)
        redis = RedisServer(root / "redis")
        redis.start()
        try:
            result = {
                "full_stack": await full_stack(root, redis, rounds, per_round),
                "take_six_cells_us": await store_take(root, redis, calls),
                "redis_sizing": redis_sizing(_mkdir(root / "sizing"), 20_000 if args.quick else 100_000),
            }
        finally:
            redis.stop()
    result["plan"] = {"rounds": rounds, "per_round": per_round, "take_calls": calls, "quick": args.quick}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stores.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'store':8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'over memory: CPU us':>20} "
          f"{'p50 ms':>7} {'take(6) wall/CPU us':>20}")
    for s in STORES:
        f, t = result["full_stack"][s], result["take_six_cells_us"][s]
        over = (f"{f['cpu_over_memory_us']:20.1f} {f['p50_over_memory_ms']:7.3f}" if s != "memory"
                else f"{'-':>20} {'-':>7}")
        print(f"{s:8} {f['p50_ms']:8.3f} {f['p99_ms']:8.3f} {f['cpu_us_per_request']:11.1f} {over} "
              f"{t['wall_us']:>9.1f} / {t['cpu_us']:<8.1f}")
    for label in ("ping_lane", "ping_redis_py"):
        t = result["take_six_cells_us"][label]
        print(f"a bare PING ({label.removeprefix('ping_')}): {t['wall_us']:.1f} us wall, {t['cpu_us']:.1f} us CPU")
    print(f"redis sizing: {result['redis_sizing']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
