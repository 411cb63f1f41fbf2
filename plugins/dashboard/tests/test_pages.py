"""Every page, header, bound and form rule of Dashboard.handle, without a listener in front."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from swqos_dashboard.web import CSP

from .dashboard_helpers import OPERATOR, decision

PAGES = ("overview", "traffic", "traders", "audit")


async def get(dash, path, *, cookie=None, query=""):
    headers = {"host": "localhost:8443"}
    if cookie:
        headers["cookie"] = f"swqos_ui={cookie}"
    return await dash.handle("GET", path, query, headers, b"", OPERATOR)


async def post(dash, fields, *, cookie, content_type="application/x-www-form-urlencoded", extra=None):
    headers = {"host": "localhost:8443", "content-type": content_type, "origin": "http://localhost:8443"}
    if cookie:
        headers["cookie"] = f"swqos_ui={cookie}"
    headers.update(extra or {})
    body = urllib.parse.urlencode(fields).encode()
    return await dash.handle("POST", "/ui/action", "", headers, body, OPERATOR)


def header(reply, name):
    values = [v for k, v in reply[1] if k.lower() == name.lower()]
    return values[0] if values else None


async def session_and_token(dash, page="traders"):
    status, headers, body = await get(dash, f"/ui/{page}")
    assert status == 200
    cookie = header((status, headers, body), "Set-Cookie")
    session = re.match(r"swqos_ui=([^;]+);", cookie).group(1)
    token = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()
    return session, token


@pytest.mark.parametrize("page", PAGES)
async def test_each_page_renders_with_strict_headers_and_no_inline_code(dashboard, page):
    dash, _ = dashboard
    dash.observe(decision())
    status, headers, body = await get(dash, f"/ui/{page}")
    reply = (status, headers, body)
    assert status == 200, body
    assert header(reply, "Content-Security-Policy") == CSP
    assert "script-src 'self'" in CSP and "frame-ancestors 'none'" in CSP and "'unsafe-inline'" not in CSP
    assert header(reply, "X-Frame-Options") == "DENY"
    assert header(reply, "Cache-Control") == "no-store"
    assert header(reply, "X-Content-Type-Options") == "nosniff"
    cookie = header(reply, "Set-Cookie")
    assert cookie is not None and all(a in cookie for a in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/ui"))
    html = body.decode()
    assert "<title>swqos" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\sstyle=", html) and "<style" not in html, "inline style"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert "http://" not in html and "https://" not in html, "an asset from elsewhere"


async def test_a_known_session_is_kept_and_not_reissued(dashboard):
    dash, _ = dashboard
    session, _ = await session_and_token(dash)
    reply = await get(dash, "/ui/overview", cookie=session)
    assert reply[0] == 200 and header(reply, "Set-Cookie") is None


async def test_overview_shows_identity_health_store_and_status_sections(dashboard, app):
    dash, _ = dashboard
    app.state.halt("kill_switch", "release 0.1.0 revoked")
    html = (await get(dash, "/ui/overview"))[2].decode()
    assert "4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi" in html  # base58 of 32 x 01
    assert "NOT SERVING" in html and "HALTED" in html and "release 0.1.0 revoked" in html
    assert "memory" in html and "ranges_age_seconds" in html


async def test_static_assets_are_served_from_the_package(dashboard):
    dash, _ = dashboard
    css = await get(dash, "/ui/static/dashboard.css")
    js = await get(dash, "/ui/static/charts.js")
    assert css[0] == 200 and header(css, "Content-Type").startswith("text/css") and b"--bg" in css[2]
    assert js[0] == 200 and header(js, "Content-Type").startswith("text/javascript") and b"fetch(" in js[2]
    assert header(js, "Content-Security-Policy") == CSP
    assert (await get(dash, "/ui/static/../settings.py"))[0] == 404
    assert (await get(dash, "/ui/static/evil.js"))[0] == 404


async def test_traffic_feed_is_json_of_the_ring(dashboard):
    dash, _ = dashboard
    dash.observe(decision())
    dash.observe(decision("RESOURCE_EXHAUSTED", stage="subject_limit", label="trader_rate"))
    status, headers, body = await get(dash, "/ui/traffic.json", query="window=600&step=60")
    import json
    feed = json.loads(body)
    assert status == 200 and header((status, headers, body), "Content-Type") == "application/json"
    assert feed["window"] == 600 and len(feed["points"]["signatures"]) == 10
    assert feed["totals"]["signatures"] == 1 and feed["totals"]["rate_limited"] == 1
    assert (await get(dash, "/ui/traffic.json", query="window=-1"))[0] == 400


async def test_untrusted_text_is_escaped(dashboard):
    dash, _ = dashboard
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    dash.observe(decision("PERMISSION_DENIED", subject=evil, stage="auth", label="revoked"))
    for page in ("traders", "audit"):
        html = (await get(dash, f"/ui/{page}"))[2].decode()
        assert "<script>alert(1)" not in html and "onerror=alert(2)>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_audit_page_filters_and_reconciles(dashboard, app):
    dash, _ = dashboard
    dash.observe(decision(subject="alice"))
    dash.observe(decision("PERMISSION_DENIED", subject="bob", stage="auth", label="revoked"))
    app.enclave.enclave_signatures = 6  # 5 at connect + alice's one
    html = (await get(dash, "/ui/audit", query="sub=bob"))[2].decode()
    assert "bob" in html and ">alice<" not in html
    assert 'id="verdict">match' in html
    html = (await get(dash, "/ui/audit", query="outcome=OK"))[2].decode()
    assert ">alice<" in html and ">bob<" not in html
    app.enclave.enclave_signatures = 9
    html = (await get(dash, "/ui/audit"))[2].decode()
    assert "differ by 3" in html
    assert (await get(dash, "/ui/audit", query="outcome=<b>"))[0] == 400


async def test_a_form_with_its_token_runs_the_operation_through_the_host(dashboard, revocations):
    dash, host = dashboard
    dash.observe(decision(subject="trader-9"))
    session, token = await session_and_token(dash)
    status, headers, _ = await post(dash, {"csrf": token, "op": "revoke-trader", "back": "traders",
                                           "p.sub": "trader-9"}, cookie=session)
    assert status == 303 and header((status, headers, b""), "Location") == "/ui/traders"
    assert host.calls == [("revoke-trader", {"sub": "trader-9"}, OPERATOR)]
    assert revocations.revoked == {"trader-9"}
    assert host.audit_lines[-1]["outcome"] == "ok" and host.audit_lines[-1]["actor"] == str(OPERATOR)
    html = (await get(dash, "/ui/traders", cookie=session))[2].decode()
    assert "revoke-trader: done" in html and "revoked" in html
    # Replaying the same post (same token) is refused and changes nothing.
    revocations.revoked.clear()
    status, _, body = await post(dash, {"csrf": token, "op": "revoke-trader", "p.sub": "trader-9"}, cookie=session)
    assert status == 403 and b"already used" in body
    assert revocations.revoked == set() and len(host.calls) == 1
    assert host.audit_lines[-1] == {"operation": "ui:revoke-trader", "outcome": "refused", "actor": str(OPERATOR),
                                    "detail": "CSRF token already used (replayed form)", "status": 403}


@pytest.mark.parametrize("case", ["no-token", "bad-token", "no-cookie", "other-cookie", "cross-site",
                                  "other-origin"])
async def test_forged_forms_are_refused_audited_and_change_nothing(dashboard, revocations, case):
    dash, host = dashboard
    session, token = await session_and_token(dash)
    fields = {"csrf": token, "op": "revoke-trader", "p.sub": "trader-1"}
    cookie, extra = session, {}
    if case == "no-token":
        del fields["csrf"]
    elif case == "bad-token":
        fields["csrf"] = token[:-4] + "0000"
    elif case == "no-cookie":
        cookie = None
    elif case == "other-cookie":
        cookie = (await session_and_token(dash))[0]
    elif case == "cross-site":
        extra = {"sec-fetch-site": "cross-site"}
    elif case == "other-origin":
        extra = {"origin": "https://evil.example"}
    status, _, _ = await post(dash, fields, cookie=cookie, extra=extra)
    assert status == 403
    assert revocations.revoked == set() and host.calls == []
    assert host.audit_lines and host.audit_lines[-1]["outcome"] == "refused"
    assert host.audit_lines[-1]["operation"] == "ui:revoke-trader" and host.audit_lines[-1]["status"] == 403
    assert dash.forms_refused == 1


async def test_an_operation_error_is_shown_not_hidden(dashboard):
    dash, host = dashboard
    session, token = await session_and_token(dash)
    status, _, _ = await post(dash, {"csrf": token, "op": "restore-trader", "back": "traders", "p.sub": "nobody"},
                              cookie=session)
    assert status == 303
    html = (await get(dash, "/ui/traders", cookie=session))[2].decode()
    assert "restore-trader refused (409)" in html and "is not revoked" in html
    assert host.calls == [("restore-trader", {"sub": "nobody"}, OPERATOR)]


@pytest.mark.parametrize("method,path,query,body,ctype,expected", [
    ("GET", "/ui/nope", "", b"", None, 404),
    ("DELETE", "/ui/overview", "", b"", None, 405),
    ("POST", "/ui/overview", "", b"", None, 405),
    ("GET", "/ui/action", "", b"", None, 405),
    ("GET", "/ui/audit", "sub=" + "x" * 3000, b"", None, 414),
    ("GET", "/ui/audit", "sub=a&sub=b", b"", None, 400),
    ("GET", "/ui/audit", "sub=%ff", b"", None, 400),
    ("POST", "/ui/action", "", b"x" * 9000, "application/x-www-form-urlencoded", 413),
    ("POST", "/ui/action", "", b'{"op": "revoke-trader"}', "application/json", 415),
    ("POST", "/ui/action", "", b"op=\xff", "application/x-www-form-urlencoded", 400),
    ("POST", "/ui/action", "", b"&".join(b"f%d=1" % i for i in range(100)), "application/x-www-form-urlencoded", 400),
])
async def test_malformed_or_oversized_requests_get_4xx(dashboard, revocations, method, path, query, body, ctype,
                                                       expected):
    dash, host = dashboard
    headers = {"host": "localhost:8443"}
    if ctype:
        headers["content-type"] = ctype
    status, _, _ = await dash.handle(method, path, query, headers, body, OPERATOR)
    assert status == expected
    assert host.calls == [] and revocations.revoked == set()


async def token_for(dash, session):
    body = (await get(dash, "/ui/traders", cookie=session))[2]
    return re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()


async def test_unknown_or_read_only_operations_and_undeclared_params_are_refused(dashboard, app, revocations):
    from swqos_core.extensions import AdminOperation

    async def status_op(params, actor):
        return {}

    app.contributions.admin_operations["status"] = ("ops", AdminOperation("status", status_op, "s", mutating=False))
    dash, host = dashboard
    session, _ = await session_and_token(dash)
    for op, extra, expected in (("no-such", {}, 404), ("status", {}, 404),
                                ("revoke-trader", {"p.sub": "t", "p.admin": "1"}, 400)):
        token = await token_for(dash, session)
        status, _, body = await post(dash, {"csrf": token, "op": op, **extra}, cookie=session)
        assert status == expected, body
    assert host.calls == [] and revocations.revoked == set()
