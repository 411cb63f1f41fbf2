"""HTTP/1.1 for the admin listener on asyncio streams, parsed by h11: one request per connection.

h11 does the protocol (request line, header syntax, Content-Length and chunked framing, RFC 9112's
refusal of whitespace before a header's colon); this module adds the listener's limits:

- request head at most ``max_head`` bytes (431), enforced by h11's incomplete-event bound;
- a body only with Content-Length (a Transfer-Encoding is refused, 501), at most ``max_body``
  bytes (413, decided from the header before any body is read);
- the whole request within the read timeout (the caller's ``asyncio.timeout``: 408);
- no repeated header (ambiguous, and none of ours may repeat), ``Connection: close`` always.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import h11

READ_CHUNK = 16 * 1024


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
    query: str = ""

    def params(self) -> dict[str, Any]:
        """The operation's parameters: the JSON object body, or the query string of a GET."""
        if self.method == "GET":
            if not self.query:
                return {}
            try:
                pairs = urllib.parse.parse_qsl(self.query, keep_blank_values=True, strict_parsing=True,
                                               max_num_fields=32)
            except ValueError:
                raise HttpError(400, "malformed query string") from None
            out: dict[str, Any] = {}
            for key, value in pairs:
                if key in out:
                    raise HttpError(400, f"repeated query parameter {key[:32]!r}")
                out[key] = value
            return out
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

    def h11_headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), ("Content-Length", str(len(self.body))),
                ("Connection", "close"), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                *self.headers.items()]


def _status_of(exc: h11.ProtocolError) -> int:
    hint = exc.error_status_hint
    return hint if hint in (400, 431, 505) else 400


async def read_request(reader: asyncio.StreamReader, conn: h11.Connection, max_body: int,
                       max_head: int) -> Request:
    """Read one request through ``conn`` (an ``h11.SERVER`` connection). Raises HttpError."""
    head: h11.Request | None = None
    body = bytearray()
    fed = 0
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HttpError(_status_of(exc), f"malformed request: {exc}"[:200]) from None
        if event is h11.NEED_DATA:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise HttpError(400, "incomplete request")
            fed += len(data)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            # h11 bounds a head still incomplete; one that arrived whole in the last read is
            # measured here: what was fed minus what h11 has not consumed yet (the body's start).
            if fed - len(conn.trailing_data[0]) > max_head:
                raise HttpError(431, "request head too large")
            head = event
            _check_head(head, max_body)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body:  # Content-Length was checked; this only guards the invariant
                raise HttpError(413, f"body larger than {max_body} bytes")
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            target = head.target.decode("ascii")
            path, _, query = target.partition("?")
            headers = {k.decode("ascii"): v.decode("latin-1") for k, v in head.headers}
            return Request(head.method.decode("ascii"), path, headers, bytes(body), query)
        elif isinstance(event, h11.ConnectionClosed):
            raise HttpError(400, "incomplete request")


def _check_head(head: h11.Request, max_body: int) -> None:
    if not head.target.startswith(b"/"):
        raise HttpError(400, "request target must be a path")
    names = [k for k, _ in head.headers]
    repeated = sorted({n.decode("ascii") for n in names if names.count(n) > 1})
    if repeated:
        raise HttpError(400, f"repeated header {repeated[0]}")
    headers = dict(head.headers)
    if b"transfer-encoding" in headers:
        raise HttpError(501, "transfer-encoding is not supported; send Content-Length")
    length = headers.get(b"content-length")
    if length is not None and int(length) > max_body:  # h11 has checked it is a number
        raise HttpError(413, f"body larger than {max_body} bytes")
    if length is None and head.method in (b"POST", b"PUT"):
        raise HttpError(411, "Content-Length required")


async def write_response(writer: asyncio.StreamWriter, conn: h11.Connection, response: Response) -> None:
    """Send ``response`` and end the connection's only exchange."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        conn = h11.Connection(h11.SERVER)  # h11 lets a server answer from IDLE: an error before any request
    data = conn.send(h11.Response(status_code=response.status, headers=response.h11_headers()))
    data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    writer.write(data)
    await writer.drain()
