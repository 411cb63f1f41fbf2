"""A mounted page runs operations only through the listener (swqos_ops.pages.PageHost): the API's
checks, the API's audit line, the operator the listener authenticated."""

from __future__ import annotations

import json

import pytest

from swqos_core import hookimpl
from swqos_ops.http import Response
from swqos_ops.listener import AdminService
from swqos_ops.pages import PageHost
from swqos_ops.testing import admin, audit_lines, ops_config
from swqos_testing.stack import running_stack


class _ProbePages:
    """``/probe/op?<name>[&sub=...]`` runs an operation, ``/probe/refuse`` writes a refusal line."""

    SWQOS_PLUGIN_NAME = "probe_pages"

    def __init__(self) -> None:
        self.host: PageHost | None = None

    @hookimpl
    def swqos_register_status(self, app, register):
        service = next(s for _, s in app.layers["service"] if isinstance(s, AdminService))
        self.host = host = PageHost(service)

        async def page(request, actor):
            if request.path == "/probe/refuse":
                host.audit("ui:probe", "refused", actor, "forged form", 403)
                return Response(403, b"refused", "text/plain")
            name, _, sub = request.query.partition("&sub=")
            status, result = await host.invoke(name, {"sub": sub} if sub else {}, actor)
            return Response.json(200, {"status": status, **result})

        service.mount("/probe/", page)


async def test_a_page_runs_operations_with_the_apis_checks_and_audit(tmp_path, admin_store):
    store, token = admin_store
    probe = _ProbePages()
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store), extra_plugins=[probe]) as stack:
        _, doc = await admin(stack, token, "/probe/op?drain", method="GET")
        assert doc["status"] == 200 and doc["draining"] is True and stack.state.draining is True
        _, doc = await admin(stack, token, "/probe/op?revoke-trader&sub=nobody", method="GET")
        assert doc["status"] == 404 and "unknown trader" in doc["error"]  # the listener's subject check
        _, doc = await admin(stack, token, "/probe/op?no-such-operation", method="GET")
        assert doc["status"] == 404
        status, _ = await admin(stack, token, "/probe/refuse", method="GET")
        assert status == 403
        lines = await audit_lines(tmp_path / "audit.jsonl", 3, lambda x: x["type"] == "admin")
        by_op = {x["operation"]: x for x in lines}
        assert by_op["drain"]["outcome"] == "ok" and by_op["drain"]["actor"].startswith("token:ops-admin")
        assert by_op["revoke-trader"]["status"] == 404 and by_op["revoke-trader"]["params"] == {"sub": "nobody"}
        assert by_op["ui:probe"] == {**by_op["ui:probe"], "outcome": "refused", "detail": "forged form",
                                     "status": 403}
        assert json.dumps(lines).count(token) == 0
        # Outside a request the listener answers there is nothing to attribute an operation to.
        with pytest.raises(LookupError):
            await probe.host.invoke("undrain", {}, None)
        assert stack.state.draining is True
