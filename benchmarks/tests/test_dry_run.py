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
