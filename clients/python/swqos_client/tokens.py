"""Bearer tokens: a fixed token, or one refreshed through a callback shortly before it expires.

The SDK never verifies a token (it has no key to verify with and does not need one): it only reads
the ``exp`` claim of a JWT to decide when to ask the callback for a new one. The proxy is the one
that verifies. Opaque (non-JWT) tokens have no ``exp`` and are refreshed only if none is held.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import threading
import time
from collections.abc import Awaitable, Callable

from .errors import TokenError

TokenCallback = Callable[[], "str | Awaitable[str]"]


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT as a UNIX time, read WITHOUT verifying the signature; None if absent."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    body = parts[1]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def _check_token(token: object) -> str:
    if not isinstance(token, str) or not token:
        raise TokenError("token refresh callback returned no token")
    # A header value cannot carry control characters; refusing here gives a clear error instead of a
    # grpc-core assertion. The message never includes the token itself.
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
        raise TokenError("token contains characters not allowed in a header")
    return token


class TokenSource:
    """Holds the current token; refreshes it through ``refresh`` when within ``refresh_margin`` s of ``exp``.

    ``refresh`` may be a plain function (usable from both clients) or a coroutine function (async
    client only). Thread-safe: concurrent callers trigger one refresh.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        refresh: TokenCallback | None = None,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token is None and refresh is None:
            raise TokenError("either a token or a refresh callback is required")
        self._token = _check_token(token) if token is not None else None
        self._exp = token_expiry(token) if token is not None else None
        self._refresh = refresh
        self.refresh_margin = float(refresh_margin)
        self._clock = clock
        self._lock = threading.Lock()
        self._alock: asyncio.Lock | None = None
        #: How many times the callback has been called (for tests and diagnostics).
        self.refreshes = 0

    def _needs_refresh(self) -> bool:
        if self._token is None:
            return True
        if self._refresh is None or self._exp is None:
            return False
        return self._clock() >= self._exp - self.refresh_margin

    def _store(self, token: object) -> str:
        tok = _check_token(token)
        self._token = tok
        self._exp = token_expiry(tok)
        self.refreshes += 1
        return tok

    def get(self) -> str:
        """The token to send now (sync); calls the refresh callback if due."""
        if not self._needs_refresh():
            return self._token  # type: ignore[return-value]
        with self._lock:
            if not self._needs_refresh():
                return self._token  # type: ignore[return-value]
            if self._refresh is None:
                raise TokenError("no token configured")
            if inspect.iscoroutinefunction(self._refresh):
                raise TokenError("an async refresh callback needs the async client")
            try:
                result = self._refresh()
            except Exception as exc:
                raise TokenError(f"token refresh callback failed: {type(exc).__name__}") from exc
            if inspect.isawaitable(result):
                raise TokenError("an async refresh callback needs the async client")
            return self._store(result)

    async def aget(self) -> str:
        """The token to send now (async); awaits the refresh callback if it is a coroutine function."""
        if not self._needs_refresh():
            return self._token  # type: ignore[return-value]
        if self._alock is None:
            self._alock = asyncio.Lock()
        async with self._alock:
            if not self._needs_refresh():
                return self._token  # type: ignore[return-value]
            if self._refresh is None:
                raise TokenError("no token configured")
            try:
                result = self._refresh()
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                raise TokenError(f"token refresh callback failed: {type(exc).__name__}") from exc
            return self._store(result)


def as_token_source(
    token: str | TokenSource | None, refresh: TokenCallback | None, refresh_margin: float
) -> TokenSource:
    if isinstance(token, TokenSource):
        return token
    return TokenSource(token, refresh=refresh, refresh_margin=refresh_margin)
