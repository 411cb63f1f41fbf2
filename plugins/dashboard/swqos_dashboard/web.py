"""The HTTP pieces the dashboard needs without an HTTP framework: replies, security headers,
cookies, query strings and form bodies, each with its bound and its 4xx."""

from __future__ import annotations

import http.cookies
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

#: (status, headers, body): what :meth:`~swqos_dashboard.dashboard.Dashboard.handle` returns.
Reply = tuple[int, list[tuple[str, str]], bytes]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
SESSION_COOKIE = "swqos_ui"
MAX_FIELDS = 64
MAX_FIELD_CHARS = 4096

SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on form posts,
    # and the Origin check below must see this host.
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"),
)
NO_STORE = ("Cache-Control", "no-store")


class BadRequest(Exception):
    """A request the dashboard will not act on; ``status`` is the 4xx to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def reply(status: int, body: bytes, content_type: str, *extra: tuple[str, str]) -> Reply:
    return status, [("Content-Type", content_type), *SECURITY_HEADERS, NO_STORE, *extra], body


def html(status: int, text: str, *extra: tuple[str, str]) -> Reply:
    return reply(status, text.encode(), "text/html; charset=utf-8", *extra)


def text(status: int, message: str, *extra: tuple[str, str]) -> Reply:
    return reply(status, (message + "\n").encode(), "text/plain; charset=utf-8", *extra)


def json_reply(status: int, data: Any) -> Reply:
    return reply(status, json.dumps(data, separators=(",", ":")).encode(), "application/json")


def redirect(location: str, *extra: tuple[str, str]) -> Reply:
    return reply(303, b"", "text/plain; charset=utf-8", ("Location", location), *extra)


def session_cookie(value: str, path: str) -> tuple[str, str]:
    return ("Set-Cookie", f"{SESSION_COOKIE}={value}; Path={path}; Secure; HttpOnly; SameSite=Strict")


def cookie(headers: Mapping[str, str], name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw or len(raw) > 4096:
        return None
    jar = http.cookies.SimpleCookie()
    try:
        jar.load(raw)
    except http.cookies.CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def parse_pairs(raw: str, what: str) -> dict[str, str]:
    """``a=1&b=2`` → dict; a repeated, overlong or undecodable field is a 400."""
    try:
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True, strict_parsing=False,
                                       max_num_fields=MAX_FIELDS, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"malformed {what}: {type(exc).__name__}") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(400, f"{what} field {key[:40]!r} given twice")
        if len(key) > 100 or len(value) > MAX_FIELD_CHARS or not key.isprintable():
            raise BadRequest(400, f"{what} field too long or unprintable")
        out[key] = value
    return out


def parse_form(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise BadRequest(415, "forms must be application/x-www-form-urlencoded")
    try:
        raw = body.decode("ascii")  # urlencoded bodies are ASCII; anything else is not our form
    except UnicodeDecodeError:
        raise BadRequest(400, "malformed form body") from None
    return parse_pairs(raw, "form")


def same_origin(headers: Mapping[str, str]) -> bool:
    """False when the browser says the post came from another site (defence in depth behind CSRF)."""
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host")
    parsed = urllib.parse.urlsplit(origin)
    return host is not None and parsed.netloc == host
