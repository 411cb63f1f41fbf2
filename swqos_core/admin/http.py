"""Just enough HTTP/1.1 for the admin listener, on asyncio streams: one request per connection.

Why not a framework: the admin API has a dozen routes, JSON bodies and one scraper; a small,
bounded parser that we can read end to end is a smaller surface than a web framework, and it
runs on the proxy's own event loop, next to the layer objects it changes (they are not
thread-safe). Limits: request head ≤ 16 KiB, a body only with Content-Length (no chunked
encoding), body ≤ the configured maximum, 10 s to send the request, ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

MAX_HEAD = 16 * 1024
READ_TIMEOUT = 10.0
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
           413: "Content Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           502: "Bad Gateway", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            doc = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise HttpError(400, "body must be a JSON object")
        return doc


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, doc: dict[str, Any], **headers: str) -> Response:
        return cls(status, json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n", headers=headers)

    def encode(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Status')}",
                 f"Content-Type: {self.content_type}", f"Content-Length: {len(self.body)}",
                 "Connection: close", "Cache-Control: no-store", "X-Content-Type-Options: nosniff"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


async def read_request(reader: asyncio.StreamReader, max_body: int) -> Request:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request head too large") from None
    except asyncio.IncompleteReadError:
        raise HttpError(400, "incomplete request") from None
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request head is not ASCII") from None
    request_line, *header_lines = text[:-4].split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, "only HTTP/1.1")
    if not target.startswith("/"):
        raise HttpError(400, "request target must be a path")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or name != name.strip() or " " in name:
            raise HttpError(400, "malformed header")
        if name in headers:  # a repeated header is ambiguous; none of ours may repeat
            raise HttpError(400, f"repeated header {name}")
        headers[name] = value.strip()
    if "transfer-encoding" in headers:
        raise HttpError(501, "transfer-encoding is not supported; send Content-Length")
    body = b""
    length_text = headers.get("content-length")
    if length_text is not None:
        if not length_text.isdigit() or len(length_text) > 9:
            raise HttpError(400, "bad Content-Length")
        length = int(length_text)
        if length > max_body:
            raise HttpError(413, f"body larger than {max_body} bytes")
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise HttpError(400, "incomplete body") from None
    elif method in ("POST", "PUT"):
        raise HttpError(411, "Content-Length required")
    path = target.split("?", 1)[0]
    return Request(method, path, headers, body)
