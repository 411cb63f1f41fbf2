"""Helpers for tests that drive the ops services through a real stack (swqos_testing.stack).

Public so other distributions' tests (a dashboard, a plugin adding an admin operation) can use
them: a config with the admin listener and the audit log, HTTP calls to the admin API, and readers
of the metrics exposition and of the audit file.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from swqos_ops.cli import Target, request
from swqos_ops.listener import AdminService

#: Generous limits so the gcra defaults (8 handshakes a minute per address) do not interfere.
OPEN_GCRA = {
    "address": {"count": 1000, "period": 1.0, "burst": 1000},
    "handshakes": {"count": 1000, "period": 1.0, "burst": 1000},
}


def token_auth(store: Path) -> dict[str, Any]:
    """``[layers.service.admin]`` keys for auth_jwt's ``api_token`` verifying admin tokens of ``store``."""
    return {"token_authenticator": "api_token", "token_auth": {"store": str(store), "accept_roles": ["admin"]}}


def ops_config(tmp_path: Path, store: Path | None, *, plugins: list[str] | None = None,
               pipeline: dict[str, Any] | None = None, layers: dict[str, Any] | None = None,
               admin: dict[str, Any] | None = None, audit: bool = True, test_plugins: bool = False) -> dict[str, Any]:
    """Proxy config overrides for ``running_stack``: the admin listener on 127.0.0.1 (any port),
    tokens from ``store`` (auth_jwt's api_token), the audit log at ``tmp_path/audit.jsonl``."""
    admin_table: dict[str, Any] = {"listen": "127.0.0.1:0"}
    if store is not None:
        admin_table.update(token_auth(store))
    admin_table.update(admin or {})
    services = ["audit", "admin"] if audit else ["admin"]
    swqos: dict[str, Any] = {"plugins": ["ops", *(plugins if plugins is not None else ["auth_jwt", "ratelimit"])]}
    if test_plugins:
        swqos["allow_test_plugins"] = True
    service_layers: dict[str, Any] = {"admin": admin_table}
    if audit:
        service_layers["audit"] = {"path": str(tmp_path / "audit.jsonl")}
    base_layers = layers if layers is not None else {"rate_limit": {"gcra": OPEN_GCRA}}
    return {
        "swqos": swqos,
        "pipeline": {**(pipeline or {"rate_limit": ["gcra"]}), "services": services},
        "layers": {**base_layers, "service": service_layers},
    }


def admin_service(stack: Any) -> AdminService:
    """The running admin listener of ``stack``."""
    return next(obj for _, obj in stack.proxy.app.layers["service"] if isinstance(obj, AdminService))


def admin_url(stack: Any) -> str:
    return f"http://127.0.0.1:{admin_service(stack).port}"


def admin_target(stack: Any, token: str | None) -> Target:
    return Target(admin_url(stack), token)


async def admin(stack: Any, token: str | None, operation: str, body: dict[str, Any] | None = None,
                method: str | None = None) -> tuple[int, Any]:
    """Call the admin API of ``stack`` (blocking client in a thread: the server shares this loop)."""
    path = operation if operation.startswith("/") else f"/v1/{operation}"
    method = method or ("GET" if operation in ("status", "operations", "/metrics", "/healthz") else "POST")
    return await asyncio.to_thread(request, admin_target(stack, token), method, path, body)


async def metrics_text(stack: Any, token: str | None = None) -> str:
    status, text = await admin(stack, token, "/metrics")
    assert status == 200, text
    return text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if found == labels:
            return float(m.group(4))
    return None


async def audit_lines(path: Path, want: int, predicate: Any = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Wait (the writer is a thread) until ``want`` lines match ``predicate``; return the matching ones."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        lines = [json.loads(raw) for raw in path.read_text().splitlines()] if path.exists() else []
        matching = [line for line in lines if predicate is None or predicate(line)]
        if len(matching) >= want or loop.time() > deadline:
            return matching
        await asyncio.sleep(0.02)
