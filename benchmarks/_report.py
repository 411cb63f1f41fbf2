"""Summaries, target checks (reported, never asserted) and the Markdown table."""

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


def targets(r: dict[str, Any]) -> dict[str, Any]:
    a, b = r["a_bare_echo"]["throughput_rps"], r["b_full_cached"]["throughput_rps"]
    ratio = round(b / a, 3) if a else None
    half_p99 = r["b_half_peak"]["p99_ms"]
    good = r["flood"]["well_behaved"]
    quic = r["quic"]["remote_signer_handshake"]
    return {
        "ratio_b_over_a": {"value": ratio, "target": ">= 0.7", "met": ratio is not None and ratio >= 0.7},
        "p99_at_half_peak_ms": {"value": half_p99, "target": "<= 2", "met": half_p99 is not None and half_p99 <= 2},
        "flood_well_behaved_success": {"value": good["success_rate"], "target": "1.0",
                                       "met": good["success_rate"] == 1.0},
        "flood_well_behaved_p99_ms": {"value": good["p99_ms"], "target": "<= 5",
                                      "met": good["p99_ms"] is not None and good["p99_ms"] <= 5},
        "quic_handshake_p50_ms": {"value": round(quic["p50_ms"], 3), "target": "<= 10", "met": quic["p50_ms"] <= 10},
        "quic_handshake_p99_ms": {"value": round(quic["p99_ms"], 3), "target": "<= 10", "met": quic["p99_ms"] <= 10},
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
    return str(v)


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"# swqos benchmark ({'quick smoke run' if r['quick'] else 'full run'}, {r['started']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}, "
        f"grpcio {m['versions'].get('grpcio', '?')}. Load generator: {r['plan']['workers']} processes x "
        f"{r['plan']['concurrency']} in flight (grpc.aio), same machine.",
        "",
        "| scenario | req/s | success | p50 ms | p99 ms | p99.9 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = [
        ("(a) bare grpcio echo, TLS 1.3", r["a_bare_echo"]),
        ("(b) full stack, cached JWT", r["b_full_cached"]),
        ("(c) full stack, new JWT per request", r["c_full_cold"]),
        (f"(b) paced at half peak ({_fmt(r['b_half_peak'].get('offered_rps'))}/s offered)", r["b_half_peak"]),
        (f"flood: well-behaved trader ({r['flood']['well_behaved']['offered_rps']}/s)", r["flood"]["well_behaved"]),
        (f"flood: flooder ({r['flood']['flooder']['offered_rps']}/s, quota "
         f"{r['flood']['quota_per_address_rps']}/s)", r["flood"]["flooder"]),
    ]
    for name, s in rows:
        lines.append(f"| {name} | {_fmt(s['throughput_rps'])} | {_fmt(s['success_rate'])} | {_fmt(s['p50_ms'])} | "
                     f"{_fmt(s['p99_ms'])} | {_fmt(s['p999_ms'])} |")
    q = r["quic"]
    lines += [
        "",
        "| QUIC handshake (loopback, 130-byte CV) | p50 ms | p99 ms |",
        "|---|---:|---:|",
        f"| via remote signer (proxy + enclave) | {_fmt(q['remote_signer_handshake']['p50_ms'])} | "
        f"{_fmt(q['remote_signer_handshake']['p99_ms'])} |",
        f"| of which the sign() call | {_fmt(q['remote_sign_call']['p50_ms'])} | "
        f"{_fmt(q['remote_sign_call']['p99_ms'])} |",
        f"| local key (aioquic alone) | {_fmt(q['local_key_handshake']['p50_ms'])} | "
        f"{_fmt(q['local_key_handshake']['p99_ms'])} |",
        "",
        "| stage (inside the proxy, signed requests) | cached JWT p50 / p99 µs | new JWT p50 / p99 µs |",
        "|---|---:|---:|",
    ]
    sb = r["b_full_cached"].get("proxy_stages", {}).get("stages", {})
    sc = r["c_full_cold"].get("proxy_stages", {}).get("stages", {})
    for stage in ("client_ip", "address_limit", "auth", "subject_limit", "validate", "enclave", "pipeline_total"):
        def cell(s: dict, st: str = stage) -> str:
            x = s.get(st)
            return f"{_fmt(x['p50_us'])} / {_fmt(x['p99_us'])}" if x else "-"
        lines.append(f"| {stage} | {cell(sb)} | {cell(sc)} |")
    mi = r["micro"]
    lines += ["", "Micro-costs (in-process, one core): " + ", ".join(f"{k} {v:.1f}" for k, v in mi.items()), "",
              "| target | value | met |", "|---|---:|:---:|"]
    for name, t in r["targets"].items():
        lines.append(f"| {name} {t['target']} | {_fmt(t['value'])} | {'yes' if t['met'] else 'no'} |")
    lines.append("")
    return "\n".join(lines)
