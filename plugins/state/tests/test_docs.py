"""Every metric the state stores export is in docs/operations.md, and every redis setting in the
distribution's README."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from swqos_state.metrics import FAMILIES
from swqos_state.redis_store import RedisSettings

ROOT = Path(__file__).resolve().parents[3]


def test_every_state_store_metric_is_in_the_operations_guide():
    doc = (ROOT / "docs" / "operations.md").read_text()
    for family in FAMILIES:
        name = family.name + ("_total" if family.kind == "counter" else "")
        assert f"| `{name}` |" in doc, name


def test_every_redis_setting_is_in_the_readme():
    rows = [line for line in (ROOT / "plugins" / "state" / "README.md").read_text().splitlines()
            if line.startswith("| `")]
    for f in dataclasses.fields(RedisSettings):
        assert any(f"`{f.name}`" in row.split("|")[1] for row in rows), f.name
