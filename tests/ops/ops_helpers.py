"""Shared helpers of the ops tests: configs with the admin listener, HTTP calls, metric and audit readers."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from swqos_core.admin.cli import Target, request

#: Generous limits so the gcra defaults (8 handshakes a minute per address) do not interfere.
OPEN_GCRA = {
    "address": {"count": 1000, "period": 1.0, "burst": 1000},
    "handshakes": {"count": 1000, "period": 1.0, "burst": 1000},
}


def ops_config(tmp_path: Path, store: Path | None, *, plugins: list[str] | None = None,
               pipeline: dict[str, Any] | None = None, layers: dict[str, Any] | None = None,
               admin: dict[str, Any] | None = None, audit: bool = True, test_plugins: bool = False) -> dict[str, Any]:
    admin_table: dict[str, Any] = {"listen": "127.0.0.1:0"}
    if store is not None:
        admin_table["token_store"] = str(store)
    admin_table.update(admin or {})
    proxy: dict[str, Any] = {"admin": admin_table}
    if audit:
        proxy["audit_log"] = str(tmp_path / "audit.jsonl")
    swqos: dict[str, Any] = {"plugins": plugins or ["auth_jwt", "ratelimit"]}
    if test_plugins:
        swqos["allow_test_plugins"] = True
    return {
        "swqos": swqos,
        "proxy": proxy,
        "pipeline": pipeline or {"rate_limit": ["gcra"]},
        "layers": layers if layers is not None else {"rate_limit": {"gcra": OPEN_GCRA}},
    }


def admin_target(stack: Any, token: str | None) -> Target:
    return Target(f"http://127.0.0.1:{stack.proxy.ops.admin.port}", token)


async def admin(stack: Any, token: str | None, operation: str, body: dict[str, Any] | None = None,
                method: str | None = None) -> tuple[int, Any]:
    """Call the admin API of ``stack`` (blocking client in a thread: the server shares this loop)."""
    path = operation if operation.startswith("/") else f"/v1/{operation}"
    method = method or ("GET" if operation in ("status", "/metrics", "/healthz") else "POST")
    return await asyncio.to_thread(request, admin_target(stack, token), method, path, body)


async def metrics_text(stack: Any) -> str:
    status, text = await admin(stack, None, "/metrics")
    assert status == 200
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
