"""One bounded HTTPS GET for every feature that downloads a document (kill-switch manifests, CDN ranges).

Built on httpx. Bounds, after TUF's endless-data and slow-retrieval attacks: a connect timeout
(TCP + TLS handshake), a total timeout over the whole exchange (a server trickling one byte a
second cannot hold a fetch open), and a cap on the body counted on the wire (one byte more is an
``oversize`` refusal, whatever Content-Length claims). Only ``identity`` encoding is accepted, so a
small compressed body cannot expand past the cap. Redirects are not followed and the environment's
proxy settings are ignored: sources are configured explicitly. TLS verifies the certificate and the
host name against the system roots, or only against ``ca_bundle`` when one is given.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from swqos_core import __version__

USER_AGENT = f"swqos/{__version__}"


class FetchError(Exception):
    """The document could not be fetched. ``label`` is a short metric label, ``message`` for the operator."""

    def __init__(self, label: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.label = label
        self.message = message
        #: The HTTP status, when the server answered with one other than 200.
        self.status = status


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Verifying client context: system roots, or only ``ca_bundle`` when given."""
    ctx = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def check_url(url: str) -> str | None:
    """A problem with ``url`` as a document source, or None."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return f"{url!r}: only https:// URLs are allowed"
    if not parts.hostname:
        return f"{url!r}: no host"
    if parts.username or parts.password:
        return f"{url!r}: credentials in URLs are not allowed"
    return None


def _client_args(ca_bundle: Path | None, connect_timeout: float, total_timeout: float) -> dict:
    return {
        "verify": ssl_context(ca_bundle),
        "timeout": httpx.Timeout(total_timeout, connect=connect_timeout),
        "follow_redirects": False,
        "trust_env": False,
        # no-cache: a kill-switch poll must see the newest manifest, not a CDN's copy.
        "headers": {"user-agent": USER_AGENT, "accept-encoding": "identity", "cache-control": "no-cache"},
    }


def _check_response(url: str, response: httpx.Response, max_bytes: int) -> None:
    if response.status_code != 200:
        raise FetchError("http_status", f"{url}: HTTP {response.status_code}", response.status_code)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchError("encoding", f"{url}: unexpected content-encoding {encoding!r}")
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("oversize", f"{url}: response is {declared} bytes, more than {max_bytes}")


def _add(url: str, body: bytearray, chunk: bytes, max_bytes: int) -> None:
    body += chunk
    if len(body) > max_bytes:
        raise FetchError("oversize", f"{url}: response larger than {max_bytes} bytes")


def _translate(url: str, exc: Exception) -> FetchError:
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return FetchError("timeout", f"{url}: timed out")
    if isinstance(exc, httpx.ConnectError) and "CERTIFICATE" in str(exc).upper():
        return FetchError("tls", f"{url}: TLS verification failed: {exc}")
    if isinstance(exc, (httpx.ConnectError, httpx.NetworkError)):
        return FetchError("connect", f"{url}: {exc or type(exc).__name__}")
    if isinstance(exc, (httpx.HTTPError, ssl.SSLError, OSError, ValueError)):  # protocol errors, bad URLs
        return FetchError("protocol", f"{url}: {type(exc).__name__}: {exc}")
    raise exc


async def get(url: str, *, max_bytes: int, connect_timeout: float = 5.0, total_timeout: float = 10.0,
              ca_bundle: Path | None = None) -> bytes:
    """GET ``url`` on the event loop; return the body or raise :class:`FetchError`."""
    try:
        async with asyncio.timeout(total_timeout):
            async with httpx.AsyncClient(**_client_args(ca_bundle, connect_timeout, total_timeout)) as client:
                async with client.stream("GET", url) as response:
                    _check_response(url, response, max_bytes)
                    body = bytearray()
                    async for chunk in response.aiter_raw():
                        _add(url, body, chunk, max_bytes)
                    return bytes(body)
    except Exception as exc:  # every failure becomes a FetchError with a label
        raise _translate(url, exc) from None


def get_sync(url: str, *, max_bytes: int, connect_timeout: float = 5.0, total_timeout: float = 10.0,
             ca_bundle: Path | None = None) -> bytes:
    """The blocking twin of :func:`get`, for command-line tools."""
    started = time.monotonic()
    try:
        with httpx.Client(**_client_args(ca_bundle, connect_timeout, total_timeout)) as client:
            with client.stream("GET", url) as response:
                _check_response(url, response, max_bytes)
                body = bytearray()
                for chunk in response.iter_raw():
                    _add(url, body, chunk, max_bytes)
                    if time.monotonic() - started > total_timeout:
                        raise FetchError("timeout", f"{url}: timed out")
                return bytes(body)
    except Exception as exc:  # every failure becomes a FetchError with a label
        raise _translate(url, exc) from None
