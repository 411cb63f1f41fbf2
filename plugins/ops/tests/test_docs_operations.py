"""docs/operations.md matches the code: every metric, every admin operation, every admin setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from swqos_core.guard import BruteForceSettings
from swqos_ops.settings import AdminSettings, AuditSettings
from swqos_ops.testing import admin, metrics_text, ops_config
from swqos_testing.stack import running_stack

DOC = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            if name.endswith("_created"):  # prometheus_client's creation-time companions of counters
                continue
            names.add(name + "_total" if kind == "counter" else name)
    return names


async def test_every_exported_metric_is_documented(tmp_path, admin_store, ops_fakes):
    store, token = admin_store
    cfg = ops_config(tmp_path, store, plugins=["auth_jwt", "ratelimit"], test_plugins=True,
                     pipeline={"client_ip": ["fake_cdn", "peer"], "rate_limit": ["gcra"]})
    async with running_stack(tmp_path, proxy=cfg, extra_plugins=[ops_fakes]) as stack:
        names = _names(await metrics_text(stack))
        status, doc = await admin(stack, token, "operations")
    assert status == 200
    for op in doc["operations"]:
        if op["owner"] != "ops_fakes":
            assert f"| {op['name']} |" in DOC, op["name"]
    assert len(names) > 30
    missing = sorted(n for n in names if f"`{n}`" not in DOC and f"`{n.removesuffix('_total')}" not in DOC)
    assert missing == []


def test_every_setting_is_documented():
    for text in (DOC, README):
        for cls in (AdminSettings, AuditSettings):
            for field in dataclasses.fields(cls):
                assert f"| {field.name} " in text or f"| {field.name} /" in text or f"/ {field.name} |" in text, \
                    (cls.__name__, field.name)
    for field in dataclasses.fields(BruteForceSettings):
        assert f"brute_force.{field.name}" in README or f"`{field.name}`" in README, field.name
