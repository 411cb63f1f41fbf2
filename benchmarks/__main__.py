"""``python -m benchmarks [--quick] [--dry-run]``: one run, every scenario, side by side.

(a) bare grpcio aio echo over the same TLS 1.3; (b) the full stack with a cached token;
(c) the full stack with a new token per request; (b½) the full stack paced at half of (b)'s peak;
the flood (one address at 10x its quota next to a well-behaved trader); per-stage costs; the QUIC
handshake through the remote signer. Results: benchmarks/results/latest.json and latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import _load, _report, _stages
from swqos_auth_jwt.issuer import DEV_ISSUER, DEV_KID
from swqos_core.identity import from_base58
from swqos_dev import devstack

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
HIGH = {"count": 100_000_000, "period": 1.0, "burst": 100_000_000}

# Flood scenario quotas: per address 50/s (burst 50), handshakes per address 50/s, per trader 50/s.
FLOOD_QUOTA = 50
FLOOD_GOOD_RATE = 20  # the well-behaved trader's normal rate, well inside its quota
FLOODER_IP = "203.0.113.66"
GOOD_IP = "198.51.100.7"


def plan(quick: bool) -> dict[str, Any]:
    d = 2.0 if quick else 12.0
    return {
        "workers": 2,
        "concurrency": 16 if quick else 32,
        "duration_s": d,
        "half_peak_duration_s": 2.0 if quick else 8.0,
        "flood_duration_s": 2.0 if quick else 12.0,
        "quic_handshakes": 5 if quick else 40,
        "warmup_s": 0.3 if quick else 1.0,
    }


def proxy_configs(dev: devstack.DevDir) -> tuple[dict, dict]:
    base = devstack.proxy_config(dev, "127.0.0.1:0")
    full = json.loads(json.dumps(base))
    full["swqos"]["plugins"] = ["auth_jwt", "ratelimit"]
    full["pipeline"]["rate_limit"] = ["gcra"]
    full.setdefault("layers", {})["rate_limit"] = {"gcra": {
        "address": HIGH, "handshakes": HIGH, "trader": HIGH, "trader_sustained": HIGH}}
    q = {"count": FLOOD_QUOTA, "period": 1.0, "burst": FLOOD_QUOTA}
    flood = json.loads(json.dumps(full))
    flood["swqos"]["plugins"] = ["auth_jwt", "ratelimit", "cdn_cloudflare"]
    flood["pipeline"]["client_ip"] = ["cloudflare"]
    flood["layers"]["client_ip"] = {"cloudflare": {"extra_trusted_ranges": ["127.0.0.0/8"], "allow_non_global": True}}
    flood["layers"]["rate_limit"]["gcra"] = {"address": q, "handshakes": q, "trader": q, "trader_sustained": HIGH}
    return full, flood


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _spawn(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=_env(),
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _wait_port(portfile: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if portfile.exists() and portfile.read_text().strip():
            return int(portfile.read_text())
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}; see its log")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args} did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stats(proc: subprocess.Popen[bytes], statsfile: Path) -> dict[str, Any]:
    statsfile.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR1)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if statsfile.exists():
            try:
                return json.loads(statsfile.read_text())
            except json.JSONDecodeError:
                pass
        time.sleep(0.05)
    return {}


def run_jobs(pool, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return pool.map(_load.run_job, jobs)


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    lat: list[float] = []
    codes: dict[str, int] = {}
    for r in results:
        lat.extend(r["lat"])
        for k, v in r["codes"].items():
            codes[k] = codes.get(k, 0) + v
    elapsed = max(r["elapsed"] for r in results)
    return _report.summarize(lat, codes, elapsed)


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("grpcio", "aioquic", "cryptography", "PyJWT", "PyNaCl"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (~30 s)")
    ap.add_argument("--dry-run", action="store_true", help="build the configs and print the plan; start nothing")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where latest.json / latest.md go")
    args = ap.parse_args(argv)
    p = plan(args.quick)

    with tempfile.TemporaryDirectory(prefix="swqos-bench-") as tmp:
        tmpdir = Path(tmp)
        dev = devstack.prepare(tmpdir / "dev")
        full, flood = proxy_configs(dev)
        cfg_full, cfg_flood = tmpdir / "proxy-full.toml", tmpdir / "proxy-flood.toml"
        devstack.write_toml(cfg_full, full)
        devstack.write_toml(cfg_flood, flood)
        if args.dry_run:
            from swqos_core import config

            for path in (cfg_full, cfg_flood):
                config.load(path, process="proxy")  # validates every key and plugin name
            print(json.dumps({"plan": p, "configs": ["full", "flood"], "machine": machine()}, indent=2))
            return 0
        return run(p, dev, tmpdir, cfg_full, cfg_flood, args)


def run(p: dict[str, Any], dev: devstack.DevDir, tmpdir: Path, cfg_full: Path, cfg_flood: Path,
        args: argparse.Namespace) -> int:
    from swqos_core.enclave.child import start_enclave_process

    started = time.time()
    ca = dev.ca.read_bytes()
    identity = from_base58(dev.identity_b58())
    results: dict[str, Any] = {"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "quick": args.quick, "plan": p, "machine": machine()}
    procs: list[subprocess.Popen[bytes]] = []
    ctx = multiprocessing.get_context("spawn")
    token = devstack.mint_dev_token(dev, "bench-trader", ttl=900)
    cold_spec = {"issuer_key_pem": dev.issuer_key.read_bytes(), "iss": DEV_ISSUER, "aud": dev.audience(),
                 "kid": DEV_KID, "sub": "bench-cold"}

    def job(target: str, **kw: Any) -> dict[str, Any]:
        j = {"target": target, "ca_pem": ca, "mode": "closed", "concurrency": p["concurrency"],
             "duration": p["duration_s"], "warmup": p["warmup_s"], "token": token}
        j.update(kw)
        return j

    def say(msg: str) -> None:
        print(f"[{time.time() - started:6.1f}s] {msg}", flush=True)

    try:
        with ctx.Pool(p["workers"]) as pool:
            enclave = start_enclave_process(dev.enclave_config, tmpdir / "enclave.log")
            procs.append(enclave)
            end = time.monotonic() + 20
            while not dev.socket.exists() and time.monotonic() < end:
                time.sleep(0.05)

            # (a) bare echo
            echo = _spawn("benchmarks._echo", str(dev.tls_cert), str(dev.tls_key), str(tmpdir / "echo.port"),
                          log=tmpdir / "echo.log")
            procs.append(echo)
            echo_target = f"127.0.0.1:{_wait_port(tmpdir / 'echo.port', echo)}"
            say("(a) bare grpcio echo, closed loop")
            results["a_bare_echo"] = merge(run_jobs(pool, [job(echo_target)] * p["workers"]))
            _stop(echo)

            # (b), (c), (b at half peak), QUIC: the full stack
            proxy = _spawn("benchmarks._proxy", str(cfg_full), str(tmpdir / "full.port"), str(tmpdir / "stats.json"),
                           log=tmpdir / "proxy-full.log")
            procs.append(proxy)
            target = f"127.0.0.1:{_wait_port(tmpdir / 'full.port', proxy)}"
            _stats(proxy, tmpdir / "stats.json")  # reset
            say("(b) full stack, cached token, closed loop")
            results["b_full_cached"] = merge(run_jobs(pool, [job(target)] * p["workers"]))
            results["b_full_cached"]["proxy_stages"] = _stats(proxy, tmpdir / "stats.json")

            peak_b = max(results["b_full_cached"]["throughput_rps"], 50.0)
            per_worker = int(peak_b / p["workers"] * (p["duration_s"] + p["warmup_s"]) * 1.2) + 200
            say(f"(c) full stack, new token per request (minting {per_worker} tokens per worker first)")
            results["c_full_cold"] = merge(run_jobs(pool, [job(target, cold=cold_spec, cold_count=per_worker)]
                                                    * p["workers"]))
            results["c_full_cold"]["proxy_stages"] = _stats(proxy, tmpdir / "stats.json")

            half = peak_b / 2
            say(f"(b) at half its peak: paced open loop at {half:.0f} req/s")
            results["b_half_peak"] = merge(run_jobs(pool, [
                job(target, mode="rate", rate=half / p["workers"], duration=p["half_peak_duration_s"])
            ] * p["workers"]))
            results["b_half_peak"]["offered_rps"] = half
            _stats(proxy, tmpdir / "stats.json")

            say(f"QUIC handshakes through the remote signer ({p['quic_handshakes']})")
            from benchmarks import _quic

            results["quic"] = asyncio.run(_quic.measure(target, ca, token, identity, p["quic_handshakes"]))
            _stop(proxy)

            # flood
            proxy = _spawn("benchmarks._proxy", str(cfg_flood), str(tmpdir / "flood.port"),
                           str(tmpdir / "stats.json"), log=tmpdir / "proxy-flood.log")
            procs.append(proxy)
            target = f"127.0.0.1:{_wait_port(tmpdir / 'flood.port', proxy)}"
            flood_token = devstack.mint_dev_token(dev, "bench-flooder", ttl=900)
            flood_rate = FLOOD_QUOTA * 10
            say(f"flood: {FLOODER_IP} at {flood_rate}/s (10x its {FLOOD_QUOTA}/s quota) next to a trader at "
                f"{FLOOD_GOOD_RATE}/s")
            flood_jobs = [
                job(target, mode="rate", rate=flood_rate, duration=p["flood_duration_s"], token=flood_token,
                    metadata=[("cf-connecting-ip", FLOODER_IP)]),
                job(target, mode="rate", rate=FLOOD_GOOD_RATE, duration=p["flood_duration_s"],
                    metadata=[("cf-connecting-ip", GOOD_IP)]),
            ]
            flooder, good = run_jobs(pool, flood_jobs)
            results["flood"] = {
                "quota_per_address_rps": FLOOD_QUOTA,
                "flooder": merge([flooder]) | {"offered_rps": flood_rate},
                "well_behaved": merge([good]) | {"offered_rps": FLOOD_GOOD_RATE},
                "proxy_outcomes": _stats(proxy, tmpdir / "stats.json").get("outcomes", {}),
            }
            _stop(proxy)

        say("micro-costs")
        results["micro"] = _stages.measure(0.1 if args.quick else 0.4)
    finally:
        for proc in procs:
            _stop(proc)
    results["wall_seconds"] = round(time.time() - started, 1)
    results["targets"] = _report.targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else "latest"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    md = _report.markdown(results)
    (args.out / f"{name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
