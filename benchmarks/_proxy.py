"""The real host-proxy in its own process, optionally with a Decision observer timing each stage.

Run: python -m benchmarks._proxy CONFIG PORTFILE STATSFILE [--observe]. Without ``--observe`` the
proxy runs exactly as ``swqos serve`` would (only the configured plugins observe decisions): the
timed scenarios use that. With it, a harness observer keeps per-stage samples; on SIGUSR1 it writes
the statistics gathered since the last SIGUSR1 to STATSFILE (JSON) and starts over. The event
loop's thread id goes to ``PORTFILE.tid`` (the harness reads that thread's CPU time).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections import defaultdict
from pathlib import Path

from swqos_core import config
from swqos_core.server import start_proxy

# Keep at most this many samples per stage (reservoir by stride is not needed at these volumes).
MAX_SAMPLES = 200_000


class StageStats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.outcomes: dict[str, int] = defaultdict(int)

    def observe(self, decision) -> None:  # swqos_core.pipeline.Decision
        self.outcomes[f"{decision.rpc}:{decision.outcome}:{decision.stage or '-'}"] += 1
        if decision.outcome != "OK":
            return
        for stage, seconds in decision.stage_seconds.items():
            bucket = self.samples[stage]
            if len(bucket) < MAX_SAMPLES:
                bucket.append(seconds)
        self.samples["pipeline_total"].append(decision.latency)

    def dump(self) -> dict:
        out: dict = {"outcomes": dict(self.outcomes), "stages": {}}
        for stage, values in self.samples.items():
            values.sort()
            n = len(values)
            if not n:
                continue
            out["stages"][stage] = {
                "n": n,
                "mean_us": sum(values) / n * 1e6,
                "p50_us": values[n // 2] * 1e6,
                "p99_us": values[min(n - 1, int(n * 0.99))] * 1e6,
            }
        return out


async def main(cfg_path: str, portfile: str, statsfile: str, observe: bool = False) -> None:
    proxy = await start_proxy(config.load(Path(cfg_path), process="proxy"))
    stats = StageStats()
    if observe:
        proxy.pipeline.observers.append(stats.observe)
        proxy.pipeline.stage_timing_every = 1  # this observer wants every call's stages
    loop = asyncio.get_running_loop()

    def dump() -> None:
        Path(statsfile).write_text(json.dumps(stats.dump()))
        stats.reset()

    loop.add_signal_handler(signal.SIGUSR1, dump)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # wait until the enclave connection is up before announcing the port
    for _ in range(500):
        if proxy.state.serving:
            break
        await asyncio.sleep(0.02)
    Path(f"{portfile}.tid").write_text(str(threading.get_native_id()))
    Path(portfile).write_text(str(proxy.port))
    await stop.wait()
    await proxy.stop(None)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4], observe="--observe" in sys.argv[4:]))
