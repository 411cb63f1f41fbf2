"""Summaries, the goals of issues 13, 14 and 16 (reported, never asserted) and the Markdown report."""

from __future__ import annotations

from typing import Any


def pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def summarize(lat: list[float], codes: dict[str, int], elapsed: float) -> dict[str, Any]:
    lat = sorted(lat)
    ok = codes.get("OK", 0)
    total = sum(v for k, v in codes.items() if k != "TOKENS_EXHAUSTED")

    def ms(q: float) -> float | None:
        v = pct(lat, q)
        return None if v is None else round(v * 1e3, 3)

    return {
        "ok": ok,
        "requests": total,
        "codes": codes,
        "success_rate": round(ok / total, 5) if total else None,
        "throughput_rps": round(ok / elapsed, 1) if elapsed else 0.0,
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "elapsed_s": round(elapsed, 2),
    }


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _goal(value: Any, target: str, ok: Any) -> dict[str, Any]:
    return {"value": value, "target": target, "met": None if value is None else bool(ok(value))}


SCRIPTS = ("hostile_argon2", "hostile_connections", "stores", "instructions")


def _usable(r: dict[str, Any]) -> dict[str, Any]:
    """The results without the scenarios that failed (their errors are listed in the report)."""
    return {k: v for k, v in r.items() if k in SCRIPTS or not (isinstance(v, dict) and "error" in v)}


def goals(r: dict[str, Any]) -> dict[str, Any]:
    r = _usable(r)
    g: dict[str, Any] = {}
    t = r.get("throughput")
    if t:
        g["deployed_over_echo_median"] = _goal(t["ratio_deployed_over_echo"]["median"], ">= 0.7 (aim 0.8)",
                                               lambda v: v >= 0.7)
        g["deployed_over_echo_min"] = _goal(t["ratio_deployed_over_echo"]["min"], "reported", lambda v: True)
        g["deployed_failed_calls"] = _goal(t["summary"]["deployed"]["failed"], "0", lambda v: v == 0)
        g["audit_and_metrics_loop_us_per_request"] = _goal(t["ops_loop_us_per_request"]["median"], "<= 15",
                                                           lambda v: v <= 15)
        g["enclave_cpu_us_per_signature"] = _goal(
            _get(t, "summary", "deployed", "cpu_us_per_request", "enclave", "median"), "<= 40", lambda v: v <= 40)
    p = _get(r, "paced", "fixed_400")
    if p:
        g["added_p50_ms_at_400"] = _goal(p["added_p50_ms"]["median"], "<= 0.3", lambda v: v <= 0.3)
        g["added_p99_ms_at_400"] = _goal(p["added_p99_ms"]["median"], "<= 1.0", lambda v: v <= 1.0)
        g["ops_loop_us_per_request_at_400"] = _goal(_get(p, "ops_loop_us_per_request", "median"), "<= 15",
                                                    lambda v: v <= 15)
    ep = r.get("enclave_path")
    if ep:
        g["enclave_answer_us_in_process"] = _goal(round(ep["answer_us"], 1), "<= 40", lambda v: v <= 40)
    o = r.get("observer_path")
    if o:
        g["observer_path_loop_us_in_process"] = _goal(round(o["total_us"], 1), "<= 15", lambda v: v <= 15)
    q = r.get("quic")
    if q:
        for phase in ("warm", "after_idle", "after_idle_keep_warm"):
            if phase not in q:
                continue
            g[f"quic_{phase}_remote_minus_local_p50_ms"] = _goal(q[phase].get("remote_minus_local_p50_ms"), "<= 1.5",
                                                                  lambda v: v <= 1.5)
            g[f"quic_{phase}_p99_ms"] = _goal(q[phase]["remote_signer_handshake"].get("p99_ms"),
                                              f"reported (n = {q[phase]['remote_signer_handshake']['n']}, "
                                              f"failed {sum(q[phase].get('failed', {}).values())})",
                                              lambda v: True)
    a = _get(r, "hostile_argon2", "result")
    if a:
        g["argon2_trader_success_during"] = _goal(_get(a, "trader", "during", "success_rate"), ">= 0.99",
                                                  lambda v: v >= 0.99)
        g["argon2_trader_p99_ms_during"] = _goal(_get(a, "trader", "during", "p99_ms"), "<= 50", lambda v: v <= 50)
        g["argon2_rss_growth_mb_5s_after"] = _goal(_get(a, "proxy_rss_mb", "growth_after_5s"), "<= 64",
                                                   lambda v: v <= 64)
    c = _get(r, "hostile_connections", "result")
    if c:
        fresh = _get(c, "idle_flood", "fresh_client_first_sign_s")
        g["idle_flood_fresh_client_max_s"] = _goal(max(fresh) if fresh else None, "<= 1", lambda v: v <= 1)
        g["idle_flood_rss_growth_mb_10s_after"] = _goal(_get(c, "idle_flood", "rss_growth_10s_after_mb"), "<= 64",
                                                        lambda v: v <= 64)
        g["bodyless_streams_ended_max_s"] = _goal(_get(c, "bodyless_streams", "ended_by_server_max_s"), "<= 2",
                                                  lambda v: v <= 2)
    ins = _get(r, "instructions", "result", "proxies")
    loop_us = _get(r, "throughput", "summary", "deployed", "cpu_us_per_request", "loop", "median")
    if ins and loop_us and "loop" in ins.get("deployed", {}) and "loop" in ins.get("no_ops", {}):
        # The timed (b) - (b-) swings by more than the budget between rounds; instructions do not.
        # Priced at the deployed loop's own CPU per instruction under load (batching makes that an
        # overestimate: a loaded loop runs fewer instructions per request than a sequential one).
        extra = ins["deployed"]["loop"] - ins["no_ops"]["loop"]
        g["audit_and_metrics_loop_us_by_instructions"] = _goal(
            round(extra * loop_us / ins["deployed"]["loop"], 1), f"<= 15 ({extra:,} instructions)", lambda v: v <= 15)
    s = _get(r, "stores", "result", "full_stack", "redis")
    if s:
        g["redis_cpu_over_memory_us"] = _goal(s.get("cpu_over_memory_us"), "<= 150", lambda v: v <= 150)
        g["redis_p50_over_memory_ms"] = _goal(s.get("p50_over_memory_ms"), "<= 0.5", lambda v: v <= 0.5)
    return g


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def _mm(s: dict[str, Any] | None) -> str:
    """min / median of a spread."""
    if not s or s.get("median") is None:
        return "-"
    return f"{_fmt(s['min'])} / {_fmt(s['median'])}"


def markdown(r: dict[str, Any]) -> str:
    failed = {k: v["error"] for k, v in r.items() if k not in SCRIPTS and isinstance(v, dict) and "error" in v}
    r = _usable(r)
    m, p = r["machine"], r["plan"]
    lines = [
        f"# swqos benchmark ({'quick smoke run' if r['quick'] else 'full run'}, {r['started']}, "
        f"{r['wall_seconds']} s)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}, "
        f"grpcio {m['versions'].get('grpcio', '?')}; load average at start {m.get('loadavg_at_start')}. "
        f"Load generator: {p['workers']} processes (grpc.aio), same machine. The machine is shared with "
        "other jobs: every comparison is interleaved rounds in alternating order; cells are min / median "
        "over rounds.",
        "",
    ]
    t = r.get("throughput")
    if t:
        lines += [
            f"## Closed loop ({p['rounds']} rounds of {p['round_s']} s, {p['workers']} x {p['concurrency']} in flight)",
            "",
            "| target | req/s | failed | p50 ms | p99 ms | loop CPU µs/req | process CPU µs/req | enclave CPU µs/req |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        names = {"echo": "(a) bare grpcio echo, TLS 1.3", "deployed": "(b) deployed config (audit + metrics on)",
                 "no_ops": "(b-) deployed without audit/admin services"}
        for name, s in t["summary"].items():
            cpu = s["cpu_us_per_request"]
            lines.append(f"| {names[name]} | {_mm(s['throughput_rps'])} | {s['failed']} | {_mm(s['p50_ms'])} | "
                         f"{_mm(s['p99_ms'])} | {_mm(cpu.get('loop'))} | {_mm(cpu.get('process'))} | "
                         f"{_mm(cpu.get('enclave')) if name != 'echo' else '-'} |")
        lines += ["",
                  f"Ratio (b)/(a), per round: {_mm(t['ratio_deployed_over_echo'])}; (b-)/(a): "
                  f"{_mm(t['ratio_no_ops_over_echo'])}. Audit + metrics, event-loop CPU per request "
                  f"((b) - (b-), per round): {_mm(t['ops_loop_us_per_request'])} µs (process: "
                  f"{_mm(t['ops_process_us_per_request'])} µs).", ""]
    pc = r.get("paced")
    if pc:
        lines += [f"## Paced open loop ({p['paced_rounds']} rounds of {p['paced_s']} s per rate)", "",
                  "| rate | target | p50 ms | p99 ms | pooled p50 / p99 ms | failed | loop CPU µs/req |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for e in pc.values():
            for name, s in e["summary"].items():
                lines.append(f"| {e['rate_rps']}/s | {name} | {_mm(s['p50_ms'])} | {_mm(s['p99_ms'])} | "
                             f"{_fmt(s['pooled_p50_ms'])} / {_fmt(s['pooled_p99_ms'])} | {s['failed']} | "
                             f"{_mm(s['cpu_us_per_request'].get('loop'))} |")
            lines.append(f"| {e['rate_rps']}/s | **proxy adds** | {_mm(e['added_p50_ms'])} | "
                         f"{_mm(e['added_p99_ms'])} | {_fmt(e.get('added_pooled_p50_ms'))} / "
                         f"{_fmt(e.get('added_pooled_p99_ms'))} | | |")
        lines.append("")
    c = r.get("cold")
    if c:
        lines += [f"New JWT per request (c): {_fmt(c['throughput_rps'])} req/s, p50 {_fmt(c['p50_ms'])} ms, p99 "
                  f"{_fmt(c['p99_ms'])} ms, failed {c['requests'] - c['ok']}, CPU µs/req {c['cpu_us_per_request']}.",
                  ""]
    proof = r.get("deployed_proof")
    if proof:
        lines += ["Deployed configuration, proof it ran with its services: " + ", ".join(
            f"{k} = {_fmt(v)}" for k, v in proof.items()), ""]
    q = r.get("quic")
    if q:
        lines += [f"## QUIC handshake through the remote signer ({q['handshakes_per_phase']} per phase, loopback)",
                  "", "| phase | via remote signer p50 / p90 / p99 ms | of which sign() p50 / p99 ms | "
                  "local key p50 / p99 ms | remote - local p50 ms | failed |", "|---|---:|---:|---:|---:|---:|"]
        for phase in ("warm", "after_idle", "after_idle_keep_warm"):
            if phase not in q:
                continue
            e = q[phase]
            h, s, lo = e["remote_signer_handshake"], e["remote_sign_call"], e["local_key_handshake"]
            name = {"warm": "warm (back to back)", "after_idle": f"after {q['idle_s']} s idle",
                    "after_idle_keep_warm": f"after {q['idle_s']} s idle, SDK keep_warm={q.get('keep_warm_s')} s"}[phase]
            lines.append(f"| {name} | {_fmt(h.get('p50_ms'))} / {_fmt(h.get('p90_ms'))} / {_fmt(h.get('p99_ms'))} | "
                         f"{_fmt(s.get('p50_ms'))} / {_fmt(s.get('p99_ms'))} | {_fmt(lo.get('p50_ms'))} / "
                         f"{_fmt(lo.get('p99_ms'))} | {_fmt(e.get('remote_minus_local_p50_ms'))} | "
                         f"{sum(e.get('failed', {}).values())} |")
        lines.append("")
    sc = r.get("single_calls")
    if sc and "echo" in sc:
        lines += [f"Single calls, one at a time, {sc['gap_s'] * 1000:.0f} ms apart (the sign call of a handshake, "
                  f"alone): echo p50 {_fmt(sc['echo'].get('p50_ms'))} / p99 {_fmt(sc['echo'].get('p99_ms'))} ms, "
                  f"deployed p50 {_fmt(sc['deployed'].get('p50_ms'))} / p99 {_fmt(sc['deployed'].get('p99_ms'))} ms "
                  f"(deployed - echo at p50: {_fmt(sc.get('deployed_minus_echo_p50_ms'))} ms); failed {sc['failed'] or 0}.",
                  ""]
    st = _get(r, "stages", "proxy_stages", "stages")
    if st:
        lines += ["## Inside the proxy, per stage (signed requests; harness observer on, not timed)", "",
                  "| stage | p50 µs | p99 µs | mean µs |", "|---|---:|---:|---:|"]
        for stage, x in st.items():
            lines.append(f"| {stage} | {_fmt(x['p50_us'])} | {_fmt(x['p99_us'])} | {_fmt(x['mean_us'])} |")
        lines.append("")
    f = r.get("flood")
    if f:
        lines += ["## Flood (one address at 10x its quota)", "", "| who | offered/s | ok/s | success | p50 ms | p99 ms |",
                  "|---|---:|---:|---:|---:|---:|"]
        for who in ("well_behaved", "flooder"):
            s = f[who]
            lines.append(f"| {who} | {s['offered_rps']} | {_fmt(s['throughput_rps'])} | {_fmt(s['success_rate'])} | "
                         f"{_fmt(s['p50_ms'])} | {_fmt(s['p99_ms'])} |")
        lines.append("")
    lines += _stores_section(_get(r, "stores", "result", "full_stack"))
    lines += _instructions_section(_get(r, "instructions", "result"))
    for name in SCRIPTS:
        e = r.get(name)
        if e:
            head = e.get("command") or e.get("skipped")
            lines.append(f"- `{name}`: {head}; " + (f"error: {e['error']}" if "error" in e else
                                                     f"exit {e.get('exit_code')}, {e.get('wall_s')} s (JSON in latest.json)"))
    for key, title, digits in (
            ("micro", "Micro-costs (in-process, one core, µs)", 1),
            ("observer_path", "Decision path on the loop, in-process (thread CPU, µs per decision)", 2),
            ("pipeline_path", "Kernel pipeline, in-process, layers doing nothing (thread CPU, µs per call)", 2),
            ("enclave_path", "Enclave answer to one SIGN frame, in-process (thread CPU, µs)", 2)):
        if r.get(key):
            lines += ["", f"{title}: " + ", ".join(f"{k} {v:.{digits}f}" for k, v in r[key].items())]
    if failed:
        lines += ["", "Scenarios that failed (see latest.json for the traceback): " + "; ".join(
            f"{k}: {v}" for k, v in failed.items())]
    lines += ["", "## Goals", "", "| goal | target | value | met |", "|---|---|---:|:---:|"]
    for name, goal in r["goals"].items():
        met = "-" if goal["met"] is None else ("yes" if goal["met"] else "no")
        lines.append(f"| {name} | {goal['target']} | {_fmt(goal['value'])} | {met} |")
    lines.append("")
    return "\n".join(lines)


def _stores_section(fs: dict[str, Any] | None) -> list[str]:
    """The state stores side by side (benchmarks/stores.py): each store's host-proxy in its own process."""
    if not fs or "phases" not in fs:
        return []
    out = ["## State stores (the deployed stack with each store, its own process; benchmarks/stores.py)", "",
           "| phase | store | p50 ms | p99 ms | proxy CPU µs/req | over memory: CPU µs | over memory: p50 ms |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for phase, stores in fs["phases"].items():
        for store, x in stores.items():
            over = ("- | -" if store == "memory" else
                    f"{_fmt(x['cpu_over_memory_us_min'])} / {_fmt(x['cpu_over_memory_us'])} | "
                    f"{_fmt(x['p50_over_memory_ms_min'])} / {_fmt(x['p50_over_memory_ms'])}")
            out.append(f"| {phase} | {store} | {_mm(x['p50_ms'])} | {_mm(x['p99_ms'])} | "
                       f"{_mm(x['cpu_us_per_request']['process'])} | {over} |")
    return [*out, "", "Cells are min / median over rounds; differences are per round, against the memory round "
            "beside it. The budget (issue 14) reads the paced phase.", ""]


def _instructions_section(ins: dict[str, Any] | None) -> list[str]:
    """Instructions per request counted by callgrind (benchmarks/instructions.py)."""
    if not ins or "proxies" not in ins:
        return [f"Instructions (callgrind): {ins['skipped']}", ""] if ins and "skipped" in ins else []
    p = ins["proxies"]
    echo = p.get("echo", {}).get("loop")
    out = [f"## Instructions per signed request (callgrind, {ins['requests']} requests one at a time)", "",
           "| target | event-loop thread | whole process | loop / echo |", "|---|---:|---:|---:|"]
    for name, x in p.items():
        if "loop" in x:
            ratio = f"{x['loop'] / echo:.2f}" if echo else "-"
            out.append(f"| {name} | {x['loop']:,} | {x['process']:,} | {ratio} |")
    e = ins.get("enclave", {})
    if "batch_1" in e:
        out += ["", f"Enclave signer: {e['batch_1']['per_signature']:,} instructions per signature answered alone, "
                f"{e['batch_10']['per_signature']:,} in batches of ten; Ed25519 (libsodium's crypto_sign) is "
                f"{e.get('ed25519_share')} of them."]
    return [*out, ""]
