"""docs/operations.md matches the code: every metric, every admin operation, every admin setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ops_fakes
from ops_helpers import metrics_text, ops_config

from swqos_core.admin.operations import ROUTES
from swqos_core.admin.settings import AdminSettings
from swqos_testing.stack import running_stack

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


def _names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            if name.endswith("_created"):  # prometheus_client's creation-time companions of counters
                continue
            names.add(name + "_total" if kind == "counter" else name)
    return names


async def test_every_exported_metric_is_documented(tmp_path, admin_store):
    store, _ = admin_store
    cfg = ops_config(tmp_path, store, plugins=["auth_jwt", "ratelimit"], test_plugins=True,
                     pipeline={"client_ip": ["fake_cdn", "peer"], "rate_limit": ["gcra"]})
    async with running_stack(tmp_path, proxy=cfg, extra_plugins=[ops_fakes]) as stack:
        names = _names(await metrics_text(stack))
    assert len(names) > 30
    missing = sorted(n for n in names if f"`{n}`" not in DOC and f"`{n.removesuffix('_total')}" not in DOC)
    assert missing == []


def test_every_operation_and_setting_is_documented():
    for operation in ROUTES:
        assert f"| {operation} |" in DOC, operation
    for field in dataclasses.fields(AdminSettings):
        assert f"| {field.name} " in DOC or f"| {field.name} /" in DOC or f"/ {field.name} |" in DOC, field.name
