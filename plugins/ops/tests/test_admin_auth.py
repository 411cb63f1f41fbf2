"""Admin credentials: a wrong or missing token is refused, audited and counted toward bans."""

from __future__ import annotations

from swqos_auth_jwt.api_tokens import create_token
from swqos_ops.testing import admin, audit_lines, metrics_text, ops_config, sample
from swqos_testing.stack import running_stack


async def test_missing_token_refused_audited_counted(tmp_path, admin_store):
    store, _token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        status, doc = await admin(stack, None, "drain")
        assert status == 401 and "missing admin credential" in doc["error"]
        assert stack.state.draining is False
        lines = await audit_lines(tmp_path / "audit.jsonl", 1, lambda x: x["type"] == "admin")
        assert lines[0]["operation"] == "drain" and lines[0]["outcome"] == "refused"
        assert lines[0]["actor"] is None and lines[0]["client"] == "127.0.0.1" and lines[0]["status"] == 401
        text = await metrics_text(stack)
        assert sample(text, "swqos_admin_auth_failures_total", reason="no_credential") == 1
        assert sample(text, "swqos_admin_bruteforce_tracked") == 1


async def test_wrong_token_refused_and_never_logged(tmp_path, admin_store):
    store, token = admin_store
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        status, doc = await admin(stack, wrong, "revoke-trader", {"sub": "x", "force": True})
        assert status == 401 and "admin credential refused" in doc["error"]
        status, doc = await admin(stack, stack.token("trader-1"), "status")  # a trader's JWT is no admin token
        assert status == 401
        lines = await audit_lines(tmp_path / "audit.jsonl", 2, lambda x: x["type"] == "admin")
        assert [x["outcome"] for x in lines] == ["refused", "refused"]
        assert lines[0]["params"] == {}
        text = (tmp_path / "audit.jsonl").read_text()
        assert wrong not in text and token not in text and token.split("_", 2)[2] not in text
        assert sample(await metrics_text(stack), "swqos_admin_auth_failures_total",
                      reason="api_token_invalid") == 1


async def test_others_failures_slow_them_down_but_never_lock_out_the_right_token(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        # Every local caller shares one address bucket: 25 failures put it past backoff and ban.
        statuses = [(await admin(stack, None, "status"))[0] for _ in range(25)]
        assert statuses[:5] == [401] * 5 and set(statuses[5:]) <= {429, 403} and statuses[-1] in (429, 403)
        status, doc = await admin(stack, "swqat_" + "x" * 10, "status")  # a wrong token: still refused
        assert status in (401, 429, 403)
        status, doc = await admin(stack, token, "drain")  # the operator's token: accepted
        assert status == 200, doc
        assert stack.state.draining is True


async def test_trader_role_api_token_is_forbidden(tmp_path, admin_store):
    store, token = admin_store
    trader_token, _ = create_token(store, "not-an-operator", "trader")
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        status, doc = await admin(stack, trader_token, "drain")
        assert "role" in doc["error"]
        assert status == 403
        assert stack.state.draining is False
        status, _doc = await admin(stack, token, "drain")
        assert status == 200
        lines = await audit_lines(tmp_path / "audit.jsonl", 2, lambda x: x["type"] == "admin")
        assert lines[-1]["outcome"] == "ok" and lines[-1]["actor"].startswith("token:ops-admin")


async def test_metrics_can_require_a_credential(tmp_path, admin_store):
    store, token = admin_store
    cfg = ops_config(tmp_path, store, admin={"metrics_open": False})
    async with running_stack(tmp_path, proxy=cfg) as stack:
        status, _ = await admin(stack, None, "/metrics")
        assert status == 401
        status, text = await admin(stack, token, "/metrics")
        assert status == 200 and "swqos_build_info" in text
