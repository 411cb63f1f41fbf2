"""A third-party plugin's admin operation and metric, through the real admin API of a real stack."""

from __future__ import annotations

from swqos_ops.testing import admin, audit_lines, metrics_text, ops_config, sample
from swqos_testing.stack import running_stack


def _cfg(tmp_path, store):
    cfg = ops_config(tmp_path, store, plugins=["auth_jwt", "ops_example"], pipeline={"rate_limit": []}, layers={})
    cfg["pipeline"]["services"].append("maintenance")
    return cfg


async def test_operation_and_metric_through_the_admin_api(tmp_path, example_admin_store):
    store, token = example_admin_store
    async with running_stack(tmp_path, proxy=_cfg(tmp_path, store)) as stack:
        assert sample(await metrics_text(stack), "swqos_example_maintenance_notes_total") == 0

        status, doc = await admin(stack, token, "set-maintenance-note", {"text": "kernel upgrade at 02:00 UTC"})
        assert status == 200, doc
        assert doc["note"] == "kernel upgrade at 02:00 UTC" and doc["set_by"].startswith("token:example-admin")
        assert sample(await metrics_text(stack), "swqos_example_maintenance_notes_total") == 1

        status, doc = await admin(stack, token, "status")
        assert status == 200 and doc["sections"]["maintenance"]["note"] == "kernel upgrade at 02:00 UTC"
        status, doc = await admin(stack, token, "operations")
        owners = {op["name"]: op["owner"] for op in doc["operations"]}
        assert owners["set-maintenance-note"] == "ops_example"

        # Refusals: the listener's generic checks and the plugin's own, both audited, nothing changed.
        status, doc = await admin(stack, token, "set-maintenance-note", {"text": "x", "colour": "red"})
        assert status == 400 and "colour" in doc["error"]
        status, doc = await admin(stack, token, "set-maintenance-note", {"text": "\x1b[31m"})
        assert status == 400 and "printable" in doc["error"]
        status, doc = await admin(stack, None, "set-maintenance-note", {"text": "by nobody"})
        assert status == 401
        assert sample(await metrics_text(stack), "swqos_example_maintenance_notes_total") == 1

        lines = await audit_lines(tmp_path / "audit.jsonl", 4,
                                  lambda x: x["type"] == "admin" and x["operation"] == "set-maintenance-note")
        assert [(x["outcome"], x["status"]) for x in lines] == [("ok", 200), ("error", 400), ("error", 400),
                                                                ("refused", 401)]
        assert lines[0]["params"] == {"text": "kernel upgrade at 02:00 UTC"}
        assert lines[1]["params"] == {"text": "x"}  # the undeclared parameter is not written down
