"""``python -m benchmarks [--quick] [--dry-run] [--only NAME ...]``: one run, every scenario, side by side.

Targets, each its own process on loopback: (a) a bare grpcio aio echo over the same TLS 1.3;
(b) the deployed configuration (``deploy/proxy.toml``'s plugins and services, audit log and metrics
on, minus the CDN); (b-) the same without the swqos-ops services (what audit and metrics cost).
Scenarios: ``throughput`` (closed loop, interleaved rounds, server CPU per request), ``paced``
(open loop at 400/s and at half of (b)'s peak: what the proxy adds at p50 and p99), ``cold`` (a new
JWT per request), ``stages`` (per-stage times, with the harness's observer, untimed otherwise),
``quic`` (handshakes through the remote signer, warm and after idle), ``flood`` (one address at 10x
its quota), ``hostile_argon2``, ``hostile_connections``, ``stores`` (the standalone scripts, run as
they run alone) and ``micro``. Results: benchmarks/results/latest.json and latest.md (``--quick``:
quick.json and quick.md). docs/performance.md explains the method.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import _configs, _load, _procs, _report, _rounds, _stages
from benchmarks._procs import Target
from swqos_auth_jwt.issuer import DEV_ISSUER, DEV_KID
from swqos_core.identity import from_base58
from swqos_dev import devstack

REPO = _procs.REPO
RESULTS = Path(__file__).resolve().parent / "results"

# Kept for the standalone scripts that import them from here.
_spawn, _stop, _wait_port, _stats = _procs.spawn, _procs.stop, _procs.wait_port, _procs.stats

# Flood scenario quotas: per address 50/s (burst 50), handshakes per address 50/s, per trader 50/s.
FLOOD_QUOTA = 50
FLOOD_GOOD_RATE = 20  # the well-behaved trader's normal rate, well inside its quota
FLOODER_IP = "203.0.113.66"
GOOD_IP = "198.51.100.7"

SCENARIOS = ("throughput", "paced", "cold", "stages", "quic", "flood", "hostile_argon2", "hostile_connections",
             "stores", "instructions", "micro")
THROUGHPUT_TARGETS = ("echo", "deployed", "no_ops")


def plan(quick: bool) -> dict[str, Any]:
    return {
        "workers": 2,
        "concurrency": 16 if quick else 32,
        "rounds": 2 if quick else 5,
        "round_s": 1.0 if quick else 4.0,
        "warmup_s": 0.3 if quick else 0.5,
        "paced_rounds": 2 if quick else 5,
        "paced_s": 1.0 if quick else 3.0,
        "fixed_rate": 400,
        "cold_s": 1.0 if quick else 4.0,
        "stages_s": 1.0 if quick else 3.0,
        "flood_duration_s": 2.0 if quick else 8.0,
        "quic_handshakes": 10 if quick else 200,
        "quic_idle_s": 0.2,
        # About what a handshake's own work (aioquic, a local key: 5 to 10 ms here) leaves between two signs.
        "single_call_gap_s": 0.005,
        "argon2_flood_s": 2.0 if quick else 10.0,
        "script_timeout_s": 300 if quick else 900,
    }


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
    for dist in ("grpcio", "aioquic", "cryptography", "PyJWT", "PyNaCl", "prometheus_client"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions, "loadavg_at_start": load}


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    lat: list[float] = []
    codes: dict[str, int] = {}
    for r in results:
        lat.extend(r["lat"])
        for k, v in r["codes"].items():
            codes[k] = codes.get(k, 0) + v
    elapsed = max(r["elapsed"] for r in results)
    return _report.summarize(lat, codes, elapsed) | {"_lat": lat}


class Bench:
    def __init__(self, p: dict[str, Any], dev: devstack.DevDir, tmp: Path, paths: dict[str, Path],
                 args: argparse.Namespace) -> None:
        self.p, self.dev, self.tmp, self.paths, self.args = p, dev, tmp, paths, args
        self.started = time.time()
        self.ca = dev.ca.read_bytes()
        self.token = _stages.low_s_token(lambda: devstack.mint_dev_token(dev, "bench-trader", ttl=900))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.targets: dict[str, Target] = {}
        self.enclave: subprocess.Popen[bytes] | None = None

    def say(self, msg: str) -> None:
        print(f"[{time.time() - self.started:6.1f}s] {msg}", flush=True)

    def job(self, target: str, **kw: Any) -> dict[str, Any]:
        j = {"target": target, "ca_pem": self.ca, "mode": "closed", "concurrency": self.p["concurrency"],
             "duration": self.p["round_s"], "warmup": 0.0, "token": self.token}
        j.update(kw)
        return j

    # --- processes -------------------------------------------------------------------------
    def start_enclave(self) -> None:
        from swqos_core.enclave.child import start_enclave_process

        self.enclave = start_enclave_process(self.dev.enclave_config, self.tmp / "enclave.log")
        self.procs.append(self.enclave)
        end = time.monotonic() + 20
        while not self.dev.socket.exists() and time.monotonic() < end:
            time.sleep(0.05)

    def start(self, name: str, *, observe: bool = False) -> Target:
        portfile = self.tmp / f"{name}.port"
        if name == "echo":
            proc = _procs.spawn("benchmarks._echo", str(self.dev.tls_cert), str(self.dev.tls_key), str(portfile),
                                log=self.tmp / "echo.log")
        else:
            cfg = self.paths["deployed" if name == "stages" else name]
            proc = _procs.spawn("benchmarks._proxy", str(cfg), str(portfile), str(self.tmp / f"{name}.stats.json"),
                                *(["--observe"] if observe else []), log=self.tmp / f"proxy-{name}.log")
        self.procs.append(proc)
        assert self.enclave is not None
        t = Target(name, proc, portfile, None if name == "echo" else self.enclave.pid)
        self.targets[name] = t
        return t

    def stop(self, name: str) -> None:
        t = self.targets.pop(name, None)
        if t is not None:
            _procs.stop(t.proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            _procs.stop(proc)

    # --- one measured run ------------------------------------------------------------------
    def measure(self, pool, t: Target, jobs: list[dict[str, Any]]) -> dict[str, Any]:
        """Run ``jobs`` (one per load process) against ``t``; the result carries the server CPU per request."""
        warm = [{k: v for k, v in j.items() if k not in ("cold", "cold_count")}
                | {"duration": self.p["warmup_s"], "mode": "closed", "concurrency": 4} for j in jobs]
        pool.map(_load.run_job, warm)  # connections, TLS, the token cache, then measure a fresh run
        t.meter.start()
        res = merge(pool.map(_load.run_job, jobs))
        cpu = t.meter.stop()
        n = max(res["requests"], 1)
        res["cpu_us_per_request"] = {k: round(v / n * 1e6, 1) for k, v in cpu.items()}
        return res


def _strip(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def throughput(b: Bench, pool) -> dict[str, Any]:
    p = b.p
    rounds: list[dict[str, dict[str, Any]]] = []
    for i, order in enumerate(_rounds.orders(THROUGHPUT_TARGETS, p["rounds"])):
        got: dict[str, dict[str, Any]] = {}
        for name in order:
            got[name] = _strip(b.measure(pool, b.targets[name], [b.job(b.targets[name].addr)] * p["workers"]))
            s = got[name]
            b.say(f"  round {i + 1} {name:9} {s['throughput_rps']:8.0f} req/s  failed "
                  f"{s['requests'] - s['ok']}  CPU/req {s['cpu_us_per_request']}"
                  + ("" if s["requests"] == s["ok"] else f"  codes {s['codes']}"))
        rounds.append(got)
    out: dict[str, Any] = {"order": THROUGHPUT_TARGETS, "rounds": rounds, "summary": {}}
    for name in THROUGHPUT_TARGETS:
        rs = [r[name] for r in rounds]
        out["summary"][name] = {
            "throughput_rps": _rounds.spread([r["throughput_rps"] for r in rs], 1),
            "failed": sum(r["requests"] - r["ok"] for r in rs),
            "p50_ms": _rounds.spread([r["p50_ms"] for r in rs]),
            "p99_ms": _rounds.spread([r["p99_ms"] for r in rs]),
            "cpu_us_per_request": {k: _rounds.spread([r["cpu_us_per_request"][k] for r in rs], 1)
                                   for k in rs[0]["cpu_us_per_request"]},
        }
    flat = [{k: {"rps": v["throughput_rps"], **v["cpu_us_per_request"]} for k, v in r.items()} for r in rounds]
    out["ratio_deployed_over_echo"] = _rounds.spread(_rounds.paired(flat, "echo", "deployed", "rps", _rounds.ratio))
    out["ratio_no_ops_over_echo"] = _rounds.spread(_rounds.paired(flat, "echo", "no_ops", "rps", _rounds.ratio))
    out["ops_loop_us_per_request"] = _rounds.spread(
        _rounds.paired(flat, "no_ops", "deployed", "loop", _rounds.diff), 1)
    out["ops_process_us_per_request"] = _rounds.spread(
        _rounds.paired(flat, "no_ops", "deployed", "process", _rounds.diff), 1)
    return out


def paced(b: Bench, pool, peak: float) -> dict[str, Any]:
    p = b.p
    out: dict[str, Any] = {}
    half = round(peak / 2)
    for label, rate, targets in (("fixed_400", p["fixed_rate"], ("echo", "deployed", "no_ops")),
                                 ("half_peak", half, ("echo", "deployed"))):
        rounds: list[dict[str, dict[str, Any]]] = []
        pooled: dict[str, list[float]] = {n: [] for n in targets}
        for i, order in enumerate(_rounds.orders(targets, p["paced_rounds"])):
            got = {}
            for name in order:
                t = b.targets[name]
                r = b.measure(pool, t, [b.job(t.addr, mode="rate", rate=rate / p["workers"], duration=p["paced_s"])]
                              * p["workers"])
                pooled[name] += r["_lat"]
                got[name] = _strip(r)
                b.say(f"  {label} ({rate}/s) round {i + 1} {name:9} p50 {r['p50_ms']} p99 {r['p99_ms']} ms "
                      f"failed {r['requests'] - r['ok']}  CPU/req {r['cpu_us_per_request']}"
                      + ("" if r["requests"] == r["ok"] else f"  codes {r['codes']}"))
            rounds.append(got)
        flat = [{k: {"p50": v["p50_ms"], "p99": v["p99_ms"], **v["cpu_us_per_request"]} for k, v in r.items()}
                for r in rounds]
        summary = {}
        for name in targets:
            lat = sorted(pooled[name])
            summary[name] = {
                "p50_ms": _rounds.spread([r[name]["p50_ms"] for r in rounds]),
                "p99_ms": _rounds.spread([r[name]["p99_ms"] for r in rounds]),
                "pooled_p50_ms": round(_report.pct(lat, 0.5) * 1e3, 3) if lat else None,
                "pooled_p99_ms": round(_report.pct(lat, 0.99) * 1e3, 3) if lat else None,
                "failed": sum(r[name]["requests"] - r[name]["ok"] for r in rounds),
                "samples": len(lat),
                "cpu_us_per_request": {k: _rounds.spread([r[name]["cpu_us_per_request"][k] for r in rounds], 1)
                                       for k in rounds[0][name]["cpu_us_per_request"]},
            }
        entry: dict[str, Any] = {"rate_rps": rate, "rounds": rounds, "summary": summary,
                                 "added_p50_ms": _rounds.spread(_rounds.paired(flat, "echo", "deployed", "p50",
                                                                                _rounds.diff)),
                                 "added_p99_ms": _rounds.spread(_rounds.paired(flat, "echo", "deployed", "p99",
                                                                                _rounds.diff))}
        if summary["deployed"]["pooled_p50_ms"] is not None and summary["echo"]["pooled_p50_ms"] is not None:
            entry["added_pooled_p50_ms"] = round(summary["deployed"]["pooled_p50_ms"]
                                                 - summary["echo"]["pooled_p50_ms"], 3)
            entry["added_pooled_p99_ms"] = round(summary["deployed"]["pooled_p99_ms"]
                                                 - summary["echo"]["pooled_p99_ms"], 3)
        if "no_ops" in targets:
            entry["ops_loop_us_per_request"] = _rounds.spread(
                _rounds.paired(flat, "no_ops", "deployed", "loop", _rounds.diff), 1)
        out[label] = entry
    return out


def cold(b: Bench, pool, peak: float) -> dict[str, Any]:
    p = b.p
    spec = {"issuer_key_pem": b.dev.issuer_key.read_bytes(), "iss": DEV_ISSUER, "aud": b.dev.audience(),
            "kid": DEV_KID, "sub": "bench-cold"}
    per_worker = int(peak / p["workers"] * (p["cold_s"] + p["warmup_s"]) * 1.2) + 200
    b.say(f"(c) deployed, new JWT per request (minting {per_worker} tokens per load process first)")
    t = b.targets["deployed"]
    return _strip(b.measure(pool, t, [b.job(t.addr, duration=p["cold_s"], cold=spec, cold_count=per_worker)]
                            * p["workers"]))


def stages(b: Bench, pool) -> dict[str, Any]:
    b.say("per-stage times (deployed + the harness's stage observer; not a timed comparison)")
    t = b.start("stages", observe=True)
    _procs.stats(t.proc, b.tmp / "stages.stats.json")  # reset
    res = _strip(b.measure(pool, t, [b.job(t.addr, duration=b.p["stages_s"])] * b.p["workers"]))
    res["proxy_stages"] = _procs.stats(t.proc, b.tmp / "stages.stats.json")
    b.stop("stages")
    return res


def flood(b: Bench, pool) -> dict[str, Any]:
    p = b.p
    t = b.start("flood")
    flood_token = devstack.mint_dev_token(b.dev, "bench-flooder", ttl=900)
    rate = FLOOD_QUOTA * 10
    b.say(f"flood: {FLOODER_IP} at {rate}/s (10x its {FLOOD_QUOTA}/s quota) next to a trader at {FLOOD_GOOD_RATE}/s")
    jobs = [
        b.job(t.addr, mode="rate", rate=rate, duration=p["flood_duration_s"], token=flood_token,
              metadata=[("cf-connecting-ip", FLOODER_IP)], warmup=0.3),
        b.job(t.addr, mode="rate", rate=FLOOD_GOOD_RATE, duration=p["flood_duration_s"],
              metadata=[("cf-connecting-ip", GOOD_IP)], warmup=0.3),
    ]
    flooder, good = pool.map(_load.run_job, jobs)
    b.stop("flood")
    return {"quota_per_address_rps": FLOOD_QUOTA,
            "flooder": _strip(merge([flooder])) | {"offered_rps": rate},
            "well_behaved": _strip(merge([good])) | {"offered_rps": FLOOD_GOOD_RATE}}


def scrape(b: Bench) -> dict[str, Any]:
    """Proof that (b) ran with metrics and the audit log on: its /metrics and its audit file."""
    import httpx

    out: dict[str, Any] = {}
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(b.tmp / "admin.sock")), timeout=5) as c:
            text = c.get("http://admin/metrics").text
        for line in text.splitlines():
            if line.startswith(("swqos_requests_total", "swqos_audit_lines_total", "swqos_audit_dropped_total",
                                "swqos_signatures_returned_total")):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
    except (httpx.HTTPError, OSError) as exc:
        out["error"] = str(exc)
    audit = b.tmp / "audit.jsonl"
    out["audit_file_lines"] = sum(1 for _ in audit.open()) if audit.exists() else 0
    return out


def script(b: Bench, name: str, argv: list[str], *, result_file: Path | None = None) -> dict[str, Any]:
    """A standalone benchmark script, run exactly as it runs alone; its JSON result."""
    b.say(f"{name}: {' '.join(argv)}")
    t0 = time.time()
    try:
        proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=_procs.env(), capture_output=True, text=True,
                              timeout=b.p["script_timeout_s"])
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {b.p['script_timeout_s']} s"}
    out: dict[str, Any] = {"command": "python " + " ".join(argv), "wall_s": round(time.time() - t0, 1),
                           "exit_code": proc.returncode}
    try:
        if result_file is not None:
            out["result"] = json.loads(result_file.read_text())
        else:
            out["result"] = json.loads(proc.stdout[proc.stdout.index("{"):])
    except (ValueError, OSError) as exc:
        out["error"] = f"no JSON result ({exc}); stderr tail: {proc.stderr[-600:]}"
    return out


def stores(b: Bench, args: argparse.Namespace, tmp: Path, quick: list[str]) -> dict[str, Any]:
    """The state stores' comparison (benchmarks/stores.py), as it runs alone."""
    stores_json = RESULTS / "stores.json"
    if not (REPO / "benchmarks" / "stores.py").exists():
        return {"skipped": "benchmarks/stores.py is not there"}
    keep = tmp / "stores.json.keep"
    if args.quick and stores_json.exists():
        shutil.copy2(stores_json, keep)  # a smoke run does not replace the full run's figures
    try:
        return script(b, "stores", ["-m", "benchmarks.stores", *quick], result_file=stores_json)
    finally:
        if keep.exists():
            shutil.copy2(keep, stores_json)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (two rounds, short runs)")
    ap.add_argument("--dry-run", action="store_true", help="build the configs and print the plan; start nothing")
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these scenarios")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where latest.json / latest.md go")
    args = ap.parse_args(argv)
    p = plan(args.quick)
    selected = tuple(args.only or SCENARIOS)

    with tempfile.TemporaryDirectory(prefix="swqos-bench-") as td:
        tmp = Path(td)
        dev = devstack.prepare(tmp / "dev")
        paths = _configs.write_all(dev, tmp, FLOOD_QUOTA)
        if args.dry_run:
            from swqos_core import config

            for path in paths.values():
                config.load(path, process="proxy")  # validates every key and plugin name
            print(json.dumps({"plan": p, "configs": sorted(paths), "scenarios": list(selected),
                              "machine": machine()}, indent=2))
            return 0
        return run(p, dev, tmp, paths, args, selected)


def run(p: dict[str, Any], dev: devstack.DevDir, tmp: Path, paths: dict[str, Path], args: argparse.Namespace,
        selected: tuple[str, ...]) -> int:
    b = Bench(p, dev, tmp, paths, args)
    results: dict[str, Any] = {"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "quick": args.quick, "plan": p, "machine": machine(), "scenarios": list(selected)}
    ctx = multiprocessing.get_context("spawn")
    grpc_scenarios = {"throughput", "paced", "cold", "stages", "quic", "flood"} & set(selected)
    def attempt(name: str, fn: Any) -> Any:
        """Run one scenario; a failure is recorded in the results, and the other scenarios still run."""
        try:
            results[name] = fn()
        except Exception as exc:  # a benchmark keeps going: the report says what failed and why
            b.say(f"{name} FAILED: {type(exc).__name__}: {exc}")
            results[name] = {"error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc()[-2000:]}
        return results[name]

    try:
        if grpc_scenarios:
            b.start_enclave()
            with ctx.Pool(p["workers"]) as pool:
                for name in THROUGHPUT_TARGETS:
                    b.start(name)
                peak = None
                if "throughput" in selected:
                    b.say(f"throughput: {p['rounds']} interleaved rounds of {p['round_s']} s, closed loop, "
                          f"{p['workers']} x {p['concurrency']} in flight")
                    t = attempt("throughput", lambda: throughput(b, pool))
                    peak = _report._get(t, "summary", "deployed", "throughput_rps", "median")
                if peak is None:
                    t = b.targets["deployed"]
                    peak = b.measure(pool, t, [b.job(t.addr)] * p["workers"])["throughput_rps"]
                if "paced" in selected:
                    b.say(f"paced: {p['paced_rounds']} interleaved rounds of {p['paced_s']} s at {p['fixed_rate']}/s "
                          f"and at half of (b)'s peak ({peak / 2:.0f}/s)")
                    attempt("paced", lambda: paced(b, pool, peak))
                if "cold" in selected:
                    attempt("cold", lambda: cold(b, pool, peak))
                attempt("deployed_proof", lambda: scrape(b))
                if "quic" in selected:
                    from benchmarks import _quic

                    b.say(f"QUIC: {p['quic_handshakes']} handshakes warm, {p['quic_handshakes']} after "
                          f"{p['quic_idle_s']} s idle, {p['quic_handshakes']} after idle with keep_warm, through (b), "
                          "alternating with a local key")
                    attempt("quic", lambda: asyncio.run(_quic.measure(
                        b.targets["deployed"].addr, b.ca, b.token, from_base58(dev.identity_b58()),
                        p["quic_handshakes"], p["quic_idle_s"])))
                    b.say(f"single calls: {p['quic_handshakes']} to (a) and to (b), one at a time, "
                          f"{p['single_call_gap_s'] * 1000:.0f} ms apart (the sign call of a handshake, alone)")
                    attempt("single_calls", lambda: _quic.single_calls(
                        {"echo": b.targets["echo"].addr, "deployed": b.targets["deployed"].addr}, b.ca, b.token,
                        p["quic_handshakes"], p["single_call_gap_s"]))
                for name in THROUGHPUT_TARGETS:
                    b.stop(name)
                if "stages" in selected:
                    attempt("stages", lambda: stages(b, pool))
                if "flood" in selected:
                    attempt("flood", lambda: flood(b, pool))
            b.close()
        quick = ["--quick"] if args.quick else []
        if "hostile_argon2" in selected:
            out_a = tmp / "hostile_argon2.json"
            attempt("hostile_argon2", lambda: script(b, "hostile_argon2", [
                "benchmarks/hostile_argon2.py", "--flood-seconds", str(p["argon2_flood_s"]), "--out", str(out_a)],
                result_file=out_a))
        if "hostile_connections" in selected:
            out_c = tmp / "hostile_connections.json"
            attempt("hostile_connections", lambda: script(b, "hostile_connections", [
                "-m", "benchmarks.hostile_connections", *quick, "--out", str(out_c)], result_file=out_c))
        if "stores" in selected:
            attempt("stores", lambda: stores(b, args, tmp, quick))
        if "instructions" in selected:
            out_i = tmp / "instructions.json"
            attempt("instructions", lambda: script(b, "instructions", [
                "-m", "benchmarks.instructions", *quick, "--out", str(out_i)], result_file=out_i))
        if "micro" in selected:
            b.say("micro-costs")
            attempt("micro", lambda: _stages.measure(0.1 if args.quick else 0.4))
            attempt("observer_path", lambda: _stages.observer_path(5_000 if args.quick else 50_000))
            attempt("pipeline_path", lambda: _stages.pipeline_path(2_000 if args.quick else 20_000))
            attempt("enclave_path", lambda: _stages.enclave_path(1_000 if args.quick else 10_000))
    finally:
        b.close()
    results["wall_seconds"] = round(time.time() - b.started, 1)
    results["goals"] = _report.goals(results)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else "latest"
    if args.only and not args.quick:
        name = "partial"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    md = _report.markdown(results)
    (args.out / f"{name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
