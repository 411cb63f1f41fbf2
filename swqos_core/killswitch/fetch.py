"""A small, bounded HTTPS GET on asyncio streams (no third-party HTTP client, no threads).

Bounds, after TUF's endless-data and slow-retrieval attacks: a connect timeout (TCP + TLS
handshake), a total timeout over the whole exchange (a server trickling one byte a second
cannot hold a poll open), a cap on header bytes, and a cap on the body (``max_bytes``; one
byte more is an ``oversize`` refusal, whatever Content-Length claims). Redirects are not
followed: mirrors are configured explicitly. The transport is untrusted anyway; the signature
decides, TLS only keeps the content private and the mirror honest about who it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from swqos_core import __version__

MAX_HEADER_BYTES = 16 * 1024


class FetchError(Exception):
    """The document could not be fetched. ``label`` is a short metric label."""

    def __init__(self, label: str, message: str) -> None:
        super().__init__(message)
        self.label = label
        self.message = message


def make_ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Verifying client context: system roots, or only ``ca_bundle`` when given."""
    ctx = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def check_url(url: str) -> str | None:
    """A problem with ``url`` as a manifest location, or None."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return f"{url!r}: only https:// URLs are allowed"
    if not parts.hostname:
        return f"{url!r}: no host"
    if parts.username or parts.password:
        return f"{url!r}: credentials in URLs are not allowed"
    return None


async def https_get(
    url: str,
    *,
    ssl_context: ssl.SSLContext,
    connect_timeout: float,
    total_timeout: float,
    max_bytes: int,
) -> bytes:
    """GET ``url`` and return the body of a 200 answer. Raises :class:`FetchError`."""
    problem = check_url(url)
    if problem:
        raise FetchError("bad_url", problem)
    try:
        async with asyncio.timeout(total_timeout):
            return await _get(url, ssl_context, connect_timeout, max_bytes)
    except TimeoutError:
        raise FetchError("timeout", f"{url}: no complete answer within {total_timeout:g} s") from None


async def _get(url: str, ctx: ssl.SSLContext, connect_timeout: float, max_bytes: int) -> bytes:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 443
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ctx, server_hostname=host, limit=MAX_HEADER_BYTES
            )
    except TimeoutError:
        raise FetchError("connect_timeout", f"{url}: connect/TLS handshake took more than {connect_timeout:g} s") \
            from None
    except ssl.SSLError as exc:
        raise FetchError("tls", f"{url}: TLS failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise FetchError("connect", f"{url}: cannot connect: {exc.strerror or exc}") from None
    try:
        host_header = host if ":" not in host else f"[{host}]"
        if parts.port:
            host_header += f":{parts.port}"
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: swqos-killswitch/{__version__}\r\n"
            "Accept: application/json, application/octet-stream, text/plain\r\n"
            "Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        status, headers = await _read_head(reader, url)
        if status != 200:
            raise FetchError("http_status", f"{url}: HTTP {status}")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await _read_chunked(reader, url, max_bytes)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise FetchError("bad_response", f"{url}: bad Content-Length")
            if int(length) > max_bytes:
                raise FetchError("oversize", f"{url}: {length} bytes announced, more than the {max_bytes}-byte cap")
            try:
                return await reader.readexactly(int(length))
            except asyncio.IncompleteReadError:
                raise FetchError("bad_response", f"{url}: connection closed mid-body") from None
        body = await reader.read(max_bytes + 1)
        while body and len(body) <= max_bytes:
            more = await reader.read(max_bytes + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > max_bytes:
            raise FetchError("oversize", f"{url}: more than the {max_bytes}-byte cap")
        return body
    except ssl.SSLError as exc:
        raise FetchError("tls", f"{url}: TLS failed: {exc.reason or exc}") from None
    except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
        raise FetchError("bad_response", f"{url}: {type(exc).__name__}") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            # Bounded by the caller's total timeout; a peer that never closes cleanly is not our problem.
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _read_head(reader: asyncio.StreamReader, url: str) -> tuple[int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        raise FetchError("bad_response", f"{url}: connection closed before the headers ended") from None
    except asyncio.LimitOverrunError:
        raise FetchError("bad_response", f"{url}: headers larger than {MAX_HEADER_BYTES} bytes") from None
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
        raise FetchError("bad_response", f"{url}: not an HTTP/1.x answer")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise FetchError("bad_response", f"{url}: malformed header line")
        key = name.strip().lower()
        if key in headers and key in ("content-length", "transfer-encoding"):
            raise FetchError("bad_response", f"{url}: repeated {key} header")
        headers[key] = value.strip()
    return int(status_line[1]), headers


async def _read_chunked(reader: asyncio.StreamReader, url: str, max_bytes: int) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readline()
        if not size_line.endswith(b"\n"):
            raise FetchError("bad_response", f"{url}: truncated chunked body")
        token = size_line.split(b";", 1)[0].strip()
        try:
            size = int(token, 16)
        except ValueError:
            raise FetchError("bad_response", f"{url}: bad chunk size") from None
        if size < 0:
            raise FetchError("bad_response", f"{url}: bad chunk size")
        if size == 0:
            return bytes(body)
        if len(body) + size > max_bytes:
            raise FetchError("oversize", f"{url}: more than the {max_bytes}-byte cap")
        try:
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise FetchError("bad_response", f"{url}: bad chunk terminator")
        except asyncio.IncompleteReadError:
            raise FetchError("bad_response", f"{url}: truncated chunked body") from None
