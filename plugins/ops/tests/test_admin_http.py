"""The admin listener's HTTP (h11) and its limits, with raw sockets against a running stack."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from swqos_core import hookimpl
from swqos_core.errors import ConfigError
from swqos_core.extensions import AdminOperation
from swqos_ops.cli import Target, request
from swqos_ops.testing import admin, admin_service, audit_lines, ops_config
from swqos_testing.stack import running_stack


async def _raw(port: int, data: bytes) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


@pytest.mark.parametrize("request_bytes,status,fragment", [
    (b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400, "malformed"),  # whitespace before the colon
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\n", 400, "repeated header x-a"),
    (b"POST /v1/drain HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, "transfer-encoding"),
    (b"POST /v1/drain HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n", 413, "body larger"),
    (b"POST /v1/drain HTTP/1.1\r\nHost: x\r\n\r\n", 411, "Content-Length"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431, ""),
    (b"GET healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "path"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 400, ""),  # TLS to a plain listener
])
async def test_malformed_requests_get_their_status_and_change_nothing(tmp_path, admin_store, request_bytes,
                                                                      status, fragment):
    store, _ = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        got, doc = await _raw(admin_service(stack).port, request_bytes)
        assert got == status, doc
        assert fragment in doc.get("error", "")
        assert stack.state.draining is False


async def test_slow_request_gets_408(tmp_path, admin_store):
    store, _ = admin_store
    cfg = ops_config(tmp_path, store, admin={"read_timeout_seconds": 0.2})
    async with running_stack(tmp_path, proxy=cfg) as stack:
        reader, writer = await asyncio.open_connection("127.0.0.1", admin_service(stack).port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
        raw = await reader.read()
        writer.close()
        assert raw.startswith(b"HTTP/1.1 408 ")


async def test_connection_cap_answers_503_and_counts(tmp_path, admin_store):
    store, _ = admin_store
    cfg = ops_config(tmp_path, store, admin={"max_connections": 2})
    async with running_stack(tmp_path, proxy=cfg) as stack:
        service = admin_service(stack)
        idle = [await asyncio.open_connection("127.0.0.1", service.port) for _ in range(2)]
        for _ in range(500):
            if service._connections == 2:
                break
            await asyncio.sleep(0.01)
        assert service._connections == 2
        # Answered at once, before any request is read (a client that sent one may see a reset).
        status, doc = await _raw(service.port, b"")
        assert status == 503 and "too many admin connections" in doc["error"]
        assert service.metrics.requests.admin_connections_refused._value.get() == 1
        for _, w in idle:
            w.close()
        for _ in range(500):
            if service._connections == 0:
                break
            await asyncio.sleep(0.01)
        status, _ = await admin(stack, None, "/healthz")
        assert status == 200


async def test_get_query_parameters_for_read_only_operations(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        status, doc = await admin(stack, token, "/v1/trader?sub=alice", method="GET")
        assert status == 200 and doc["sub"] == "alice" and doc["known"] is False
        status, doc = await admin(stack, token, "/v1/trader?sub=a&sub=b", method="GET")
        assert status == 400 and "repeated" in doc["error"]
        status, doc = await admin(stack, token, "/v1/drain", method="GET")
        assert status == 405 and stack.state.draining is False


async def test_unix_socket_audit_line_names_the_peer(tmp_path, admin_store):
    store, token = admin_store
    sock = tmp_path / "run" / "admin.sock"
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store, admin={"listen": f"unix://{sock}"})):
        status, _ = await asyncio.to_thread(request, Target(f"unix://{sock}", token), "POST", "/v1/drain", {})
        assert status == 200
        (line,) = await audit_lines(tmp_path / "audit.jsonl", 1, lambda x: x["type"] == "admin")
        assert line["peer"] == {"uid": os.getuid(), "pid": os.getpid()}


async def test_unix_socket_in_use_is_refused(tmp_path, admin_store):
    store, _ = admin_store
    sock = tmp_path / "run" / "admin.sock"
    sock.parent.mkdir()
    other = await asyncio.start_unix_server(lambda r, w: w.close(), path=str(sock))
    try:
        with pytest.raises(ConfigError, match="in use by another running process"):
            async with running_stack(tmp_path, proxy=ops_config(tmp_path, store, admin={"listen": f"unix://{sock}"})):
                pytest.fail("took the socket of a running listener")
    finally:
        other.close()


async def test_token_auth_is_validated_against_the_named_registration(tmp_path, admin_store):
    store, _ = admin_store
    cfg = ops_config(tmp_path, store, admin={"token_auth": {"store": str(store), "accept_roles": ["admin"],
                                                            "stores": "typo"}})
    with pytest.raises(ConfigError, match=r"\[layers.service.admin.token_auth\]: unknown key 'stores'"):
        async with running_stack(tmp_path, proxy=cfg):
            pytest.fail("started with a misspelled token_auth setting")


class _Clash:
    SWQOS_PLUGIN_NAME = "clash"

    @hookimpl
    def swqos_register_admin_operations(self, app, register):
        async def handler(params, actor):
            return {}

        register(AdminOperation("drain", handler, "a second drain"))


async def test_two_owners_of_one_operation_stop_startup(tmp_path, admin_store):
    store, _ = admin_store
    with pytest.raises(ConfigError, match=r"admin operation 'drain' is registered twice: by plugin 'ops'.*'clash'"):
        async with running_stack(tmp_path, proxy=ops_config(tmp_path, store), extra_plugins=[_Clash()]):
            pytest.fail("started with two owners of one operation")


class _Pages:
    """A dashboard-like extension: pages under /ui/, behind the listener's authentication."""

    SWQOS_PLUGIN_NAME = "pages"

    @hookimpl
    def swqos_register_status(self, app, register):
        from swqos_ops.http import Response
        from swqos_ops.listener import AdminService

        async def page(request, actor):
            return Response(200, f"<p>hello {actor.name}</p>".encode(), "text/html; charset=utf-8",
                            {"Content-Security-Policy": "default-src 'self'"})

        for _, service in app.layers["service"]:
            if isinstance(service, AdminService):
                service.mount("/ui/", page)
                with pytest.raises(ValueError, match="already served"):
                    service.mount("/v1/", page)


async def test_mounted_pages_sit_behind_the_listeners_authentication(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store), extra_plugins=[_Pages()]) as stack:
        status, _ = await admin(stack, None, "/ui/overview", method="GET")
        assert status == 401
        status, text = await admin(stack, token, "/ui/overview", method="GET")
        assert status == 200 and text == "<p>hello ops-admin</p>"
        lines = await audit_lines(tmp_path / "audit.jsonl", 1, lambda x: x["type"] == "admin")
        assert lines[0]["operation"] == "ui" and lines[0]["outcome"] == "refused"
