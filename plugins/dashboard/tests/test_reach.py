"""Who reaches the pages: an operator's certificate over mutual TLS, directly or through a tunnel
to the Unix socket; nobody else gets one byte of a page."""

from __future__ import annotations

import ssl

import pytest

from swqos_ops.testing import admin_service
from swqos_testing.stack import running_stack

from .reach_helpers import dashboard_config, exchange, raw_request
from .tls_helpers import client_context, unix_tunnel

GET = b"GET /ui/overview HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.mark.parametrize("who", ["none", "other-ca", "expired"])
async def test_no_page_without_a_valid_client_certificate(tmp_path, who):
    async with running_stack(tmp_path, proxy=dashboard_config(tmp_path)) as stack:
        port = admin_service(stack).port
        server_ca = tmp_path / "dev" / "ca.pem"
        cert = {"none": None, "other-ca": "mallory", "expired": "operator-expired"}[who]
        ctx = client_context(server_ca, *((tmp_path / f"{cert}.crt", tmp_path / f"{cert}.key") if cert else ()))
        # TLS 1.3: the client's side of the handshake completes before the server has judged its
        # certificate, so the refusal arrives as an alert on the first read.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            raw = await raw_request(port, ctx, GET)
            assert raw == b"", raw  # a close without an alert is still no page
            raise ConnectionError("closed without a page")
        operator = client_context(server_ca, tmp_path / "operator-1.crt", tmp_path / "operator-1.key")
        raw = await raw_request(port, operator, GET)
        assert raw.startswith(b"HTTP/1.1 200 ") and b"<title>swqos" in raw


async def test_the_socket_tunnel_path_serves_the_operator_and_nobody_else(tmp_path):
    sock = tmp_path / "run" / "admin.sock"
    async with running_stack(tmp_path, proxy=dashboard_config(tmp_path, f"unix://{sock}")) as stack:
        assert admin_service(stack).address.kind == "unix"
        server_ca = tmp_path / "dev" / "ca.pem"
        async with unix_tunnel(str(sock)) as local:  # ssh -L 127.0.0.1:local:/…/admin.sock
            operator = client_context(server_ca, tmp_path / "operator-1.crt", tmp_path / "operator-1.key")
            raw = await raw_request(local, operator, GET)
            assert raw.startswith(b"HTTP/1.1 200 ") and b"certificate:operator-1" in raw
            with pytest.raises((ssl.SSLError, ConnectionError)):
                raw = await raw_request(local, client_context(server_ca), GET)
                assert raw == b"", raw
                raise ConnectionError("closed without a page")


async def test_forms_drive_the_real_operations(tmp_path):
    """Quota and allowlist forms, as the Traders page posts them, change the real layers."""
    import re

    async with running_stack(tmp_path, proxy=dashboard_config(tmp_path)) as stack:
        port = admin_service(stack).port
        operator = client_context(tmp_path / "dev" / "ca.pem", tmp_path / "operator-1.crt",
                                  tmp_path / "operator-1.key")
        status, headers, _ = await exchange(port, operator, "GET", "/ui/traders")
        assert status == 200
        session = re.match(r"swqos_ui=([^;]+);", headers["set-cookie"]).group(1)

        async def post(fields):
            _, _, page = await exchange(port, operator, "GET", "/ui/traders", cookie=session)
            token = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
            status, headers, _ = await exchange(port, operator, "POST", "/ui/action", cookie=session,
                                                form={"csrf": token, "back": "traders", **fields})
            assert headers.get("location") == "/ui/traders"
            _, _, after = await exchange(port, operator, "GET", "/ui/traders", cookie=session)
            return status, after

        status, page = await post({"op": "set-quota", "p.sub": "trader-new", "p.rate.count": "3",
                                   "p.rate.period": "1", "p.rate.burst": "3", "p.force": "on"})
        assert status == 303 and b"set-quota: done" in page
        limiter = stack.proxy.app.one("rate_limit")
        assert limiter.trader_quota("trader-new")["source"] == "runtime"
        status, page = await post({"op": "set-allowlist", "p.sub": "trader-new", "p.cidrs": "192.0.2.0/24",
                                   "p.force": "on"})
        assert status == 303 and b"set-allowlist: done" in page
        jwt = stack.proxy.app.one("auth")
        assert jwt.state()["allowlist"]["trader-new"] == ["192.0.2.0/24"]
        # Without force, an unknown trader is refused by the listener's check, shown on the page.
        status, page = await post({"op": "revoke-trader", "p.sub": "trader-typo"})
        assert status == 303 and b"revoke-trader refused (404)" in page
        assert "trader-typo" not in jwt.state()["revoked"].get("sub", ())
