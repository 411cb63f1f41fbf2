"""CSRF tokens for every state-changing form: bound to the browser session, short-lived, single-use.

A token is ``<issued>.<nonce>.<mac>``, where ``mac = HMAC-SHA256(secret, session | operator | issued |
nonce)``
with a secret drawn when the process starts (tokens die with the process, by design). A form post
is accepted only when its token verifies against the session cookie it came with (constant-time
compare), is younger than ``csrf_max_age_seconds``, and has not been used before: the used nonces
are remembered until they would have expired anyway, at most ``csrf_used_max`` of them; a full
table refuses further forms (503) rather than forget a token that could then be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

SESSION_BYTES = 24


class CsrfRefused(Exception):
    """A form post whose token is missing, forged, expired or replayed (HTTP 403)."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason  # bounded: one of a few fixed phrases, safe for the audit line
        self.status = status


def new_session() -> str:
    return secrets.token_urlsafe(SESSION_BYTES)


def valid_session(value: str | None) -> bool:
    return value is not None and 16 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


class CsrfGuard:
    def __init__(self, max_age: float, used_max: int, clock: Callable[[], float] = time.time) -> None:
        self._secret = secrets.token_bytes(32)
        self.max_age = max_age
        self.used_max = used_max
        self.clock = clock
        self._used: OrderedDict[str, float] = OrderedDict()  # nonce -> issued, oldest issued first
        self.refused = 0
        self.table_full = 0

    def _mac(self, session: str, bound: str, issued: int, nonce: str) -> str:
        msg = f"{session}|{bound}|{issued}|{nonce}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def issue(self, session: str, bound: str = "") -> str:
        """A token for a form rendered to ``session``; ``bound`` (the operator) must match at check."""
        issued = int(self.clock())
        nonce = secrets.token_urlsafe(12)
        return f"{issued}.{nonce}.{self._mac(session, bound, issued, nonce)}"

    def _expire(self, now: float) -> None:
        while self._used:
            _nonce, issued = next(iter(self._used.items()))
            if issued + self.max_age >= now:
                break
            self._used.popitem(last=False)

    def check(self, session: str | None, token: str | None, bound: str = "") -> None:
        """Accept (and use up) ``token`` for ``session`` and ``bound``, or raise :class:`CsrfRefused`."""
        try:
            self._check(session, token, bound)
        except CsrfRefused:
            self.refused += 1
            raise

    def _check(self, session: str | None, token: str | None, bound: str) -> None:
        if not valid_session(session):
            raise CsrfRefused("no session cookie")
        if not token:
            raise CsrfRefused("missing CSRF token")
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 12 or len(token) > 200:
            raise CsrfRefused("malformed CSRF token")
        issued, nonce, mac = int(parts[0]), parts[1], parts[2]
        assert session is not None
        if not hmac.compare_digest(mac.encode(), self._mac(session, bound, issued, nonce).encode()):
            raise CsrfRefused("CSRF token does not match this session")
        now = self.clock()
        if issued > now + 5 or now - issued > self.max_age:
            raise CsrfRefused("CSRF token expired; reload the page")
        self._expire(now)
        if nonce in self._used:
            raise CsrfRefused("CSRF token already used (replayed form)")
        if len(self._used) >= self.used_max:
            self.table_full += 1
            raise CsrfRefused("too many forms in flight; retry in a few minutes", status=503)
        # Kept ordered by issue time so expiry pops from the front (forms posted out of order re-sort).
        last = next(reversed(self._used.values()), None)
        self._used[nonce] = issued
        if last is not None and issued < last:
            self._used = OrderedDict(sorted(self._used.items(), key=lambda kv: kv[1]))
