"""The dashboard in a real browser, on the real admin listener with mutual TLS, over a real stack.

Headless Chromium reaches the mutual-TLS listener through the tunnel path (a loopback forwarder
presenting the operator's client certificate; see the README), and goes straight to the listener
for the no-certificate check. Traders sign through the real gRPC stack of the test kit.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from pathlib import Path

import grpc
import pytest

from swqos_ops.testing import admin_service, audit_lines
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack

from .browser_helpers import Browser, missing
from .reach_helpers import dashboard_config, raw_request
from .tls_helpers import client_context, tls_forwarder

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"browser tests need Chromium: {missing()}")

DOCS = Path(__file__).resolve().parents[3] / "docs" / "dashboard"
#: A revoked trader's authentic token: "valid credential not allowed" (auth_jwt's step 9).
REVOKED = grpc.StatusCode.PERMISSION_DENIED
PAGES = {"overview": "Overview", "traffic": "Traffic", "traders": "Traders and tokens",
         "audit": "Audit and reconcile"}


def _keep(shot: Path) -> None:
    if os.environ.get("SWQOS_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS / shot.name)


async def test_dashboard_in_a_browser_over_mutual_tls(tmp_path):
    async with running_stack(tmp_path, proxy=dashboard_config(tmp_path)) as stack:
        port = admin_service(stack).port
        server_ca = tmp_path / "dev" / "ca.pem"
        operator = client_context(server_ca, tmp_path / "operator-1.crt", tmp_path / "operator-1.key")
        alice, bob = stack.token("trader-alice"), stack.token("trader-bob")
        for token in (alice, alice, bob):
            assert (await stack.sign(valid_cv(), token=token)).code == grpc.StatusCode.OK
        assert (await stack.sign(valid_cv(), token="not-a-jwt")).code == grpc.StatusCode.UNAUTHENTICATED

        browser = await Browser.start(tmp_path / "chromium-profile")
        try:
            async with tls_forwarder(port, operator) as local:
                base = f"http://localhost:{local}/ui"
                # --- every page, with its screenshot -------------------------------------------
                for page, heading in PAGES.items():
                    await browser.get(f"{base}/{page}")
                    assert await browser.title() == f"swqos · {page.capitalize()}"
                    assert (await browser.css("h1")).text == heading
                    assert "certificate:operator-1" in (await browser.css("header .actor")).text
                    if page == "traffic":  # charts.js ran (CSP allows it) and drew from the JSON feed
                        await browser.wait_for("#traffic[data-updated]")
                        assert (await browser.css("[data-total=signatures]")).text == "3"
                    if page == "overview":
                        key = (await browser.css("#identity-key")).text
                        assert key == stack.dev.identity_b58()
                    if page == "audit":
                        assert (await browser.css("#verdict")).text == "match"
                    _keep(await browser.screenshot(tmp_path / f"{page}.png"))
                    assert (tmp_path / f"{page}.png").stat().st_size > 10_000
                problems = [e for e in await browser.console() if e.get("level") == "SEVERE"
                            or "Content Security Policy" in e.get("message", "")]
                assert problems == [], problems

                # --- revoke a trader in the page: its next signature is refused ------------------
                await browser.get(f"{base}/traders")
                await browser.click('tr[data-sub="trader-alice"] form[data-op="revoke-trader"] button')
                flash = await browser.wait_for("#flash")
                assert flash.text == "revoke-trader: done"
                made = await stack.signatures_made()
                refused = await stack.sign(valid_cv(), token=alice)
                assert refused.code == REVOKED and "subject revoked" in refused.details
                assert await stack.signatures_made() == made
                assert (await stack.sign(valid_cv(), token=bob)).code == grpc.StatusCode.OK
                lines = await audit_lines(tmp_path / "audit.jsonl", 1, lambda x: x.get("type") == "admin"
                                          and x.get("operation") == "revoke-trader")
                assert lines and lines[-1]["actor"] == "certificate:operator-1" and lines[-1]["outcome"] == "ok"
                assert lines[-1]["params"] == {"sub": "trader-alice"}

                # --- a form without its CSRF token: 403, nothing changed, an audit line ----------
                await browser.get(f"{base}/traders")
                await browser.script(
                    "document.querySelector('tr[data-sub=\"trader-alice\"] form input[name=csrf]').remove()")
                await browser.click('tr[data-sub="trader-alice"] form[data-op="restore-trader"] button')
                assert "form refused: missing CSRF token" in await browser.wait_for_text("form refused")
                assert (await stack.sign(valid_cv(), token=alice)).code == REVOKED
                refusals = await audit_lines(tmp_path / "audit.jsonl", 1, lambda x: x.get("type") == "admin"
                                             and x.get("operation") == "ui:restore-trader")
                assert refusals and refusals[-1]["outcome"] == "refused" and refusals[-1]["status"] == 403
                assert refusals[-1]["actor"] == "certificate:operator-1"

                # --- the same refusal without a browser (no cookie, no token) --------------------
                body = urllib.parse.urlencode({"op": "restore-trader", "p.sub": "trader-alice"}).encode()
                raw = await raw_request(port, operator, b"POST /ui/action HTTP/1.1\r\nHost: localhost\r\n"
                                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                assert raw.startswith(b"HTTP/1.1 403 ")
                assert (await stack.sign(valid_cv(), token=alice)).code == REVOKED

            # --- no client certificate: the browser gets no page at all --------------------------
            await browser.get(f"https://localhost:{port}/ui/overview")
            assert not (await browser.title()).startswith("swqos")
            assert "Traders and tokens" not in await browser.source()
        finally:
            await browser.quit()
