"""The benchmark's configs stay loadable as the core and plugins evolve (no load is generated)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_dry_run_builds_valid_configs() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--dry-run"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["configs"] == ["deployed", "flood", "no_ops"] and plan["plan"]["workers"] >= 1


def test_the_store_and_instruction_targets_are_valid_deployed_configs(tmp_path) -> None:
    """benchmarks.stores and benchmarks.instructions run the deployed configuration with each
    store swapped in: every variant must load as a host-proxy config."""
    from benchmarks import instructions, stores
    from swqos_core import config
    from swqos_dev import devstack
    from swqos_state.testing import RedisServer

    dev = devstack.prepare(tmp_path / "dev")
    redis = RedisServer(tmp_path / "redis")  # not started: only its settings are used
    for store in stores.STORES:
        cfg = config.load(stores.proxy_config(dev, store, redis, tmp_path / f"s-{store}"), process="proxy")
        assert cfg.pipeline.store == store and cfg.pipeline.services == ["audit", "admin"]
    for name in ("no_ops", "deployed", "memory", "redis"):
        cfg = config.load(instructions.proxy_config(dev, tmp_path / f"i-{name}", name, redis), process="proxy")
        assert cfg.settings.deadline_ms == 10_000
        assert cfg.pipeline.store == {"memory": "memory", "redis": "redis"}.get(name, "sqlite")
        assert (cfg.pipeline.services or []) == ([] if name == "no_ops" else ["audit", "admin"])


def test_the_report_renders_the_store_and_instruction_tables() -> None:
    from benchmarks import _report

    spread = {"min": 1.0, "median": 2.0, "max": 3.0, "n": 2}
    store = {"p50_ms": spread, "p99_ms": spread, "cpu_us_per_request": {"process": spread},
             "cpu_over_memory_us": 120.0, "cpu_over_memory_us_min": 80.0, "p50_over_memory_ms": 0.3,
             "p50_over_memory_ms_min": 0.2}
    phase = {"memory": {"p50_ms": spread, "p99_ms": spread, "cpu_us_per_request": {"process": spread}},
             "sqlite": store, "redis": store}
    results = {"machine": {"cpu": "x", "cores": 2, "platform": "p", "python": "3.11", "versions": {}},
               "plan": {"workers": 2}, "quick": False, "started": "now", "wall_seconds": 1.0,
               "stores": {"result": {"full_stack": phase | {"phases": {"paced_400": phase}}}},
               "instructions": {"result": {"requests": 10, "proxies": {
                   "echo": {"loop": 100, "process": 120}, "deployed": {"loop": 250, "process": 300},
                   "no_ops": {"loop": 240, "process": 280}},
                   "enclave": {"batch_1": {"per_signature": 300}, "batch_10": {"per_signature": 280},
                               "ed25519_share": 0.75}}}}
    results["goals"] = _report.goals(results)
    md = _report.markdown(results)
    assert "| paced_400 | redis | 1.00 / 2.00 | 1.00 / 2.00 | 1.00 / 2.00 | 80.00 / 120 | 0.20 / 0.30 |" in md
    assert "| deployed | 250 | 300 | 2.50 |" in md
    assert results["goals"]["redis_cpu_over_memory_us"] == {"value": 120.0, "target": "<= 150", "met": True}
    # Without a throughput run there is no CPU per instruction to price the difference at.
    assert "audit_and_metrics_loop_us_by_instructions" not in results["goals"]
    results["throughput"] = {"ratio_deployed_over_echo": spread, "ops_loop_us_per_request": spread,
                             "summary": {"deployed": {"failed": 0, "cpu_us_per_request": {"loop": {"median": 500.0}}}}}
    priced = _report.goals(results)["audit_and_metrics_loop_us_by_instructions"]
    assert priced == {"value": 20.0, "target": "<= 15 (10 instructions)", "met": False}
