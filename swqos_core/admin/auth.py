"""Who may call the admin API: an Argon2id admin API token, or a verified mTLS client certificate.

Tokens are verified by the registered authenticator named in ``[proxy.admin] token_authenticator``
(auth_jwt's ``api_token``), built here with its own settings ``{store, accept_roles = ["admin"]}``:
the narrow interface is "an auth registration whose settings take ``store`` and ``accept_roles``
and whose ``authenticate`` returns a Principal with role ``admin``". Its brute-force guard
(``.guard`` with ``check/failure/success/snapshot``) counts failures per client address bucket;
a request with no admin credential at all is counted there too. Without such a guard a small
built-in one applies the same rule (ban after 20 failures in 60 s).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import grpc

from swqos_core import schema
from swqos_core.admin.operations import AdminError
from swqos_core.admin.settings import AdminSettings
from swqos_core.errors import ConfigError, Rejection, permission_denied
from swqos_core.layers import BuildContext, ClientAddress, RequestHead

log = logging.getLogger("swqos.admin.auth")

_STATUS = {grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
           grpc.StatusCode.RESOURCE_EXHAUSTED: 429}


@dataclass(frozen=True)
class Actor:
    """The authenticated operator, as the audit log names it (never the credential)."""

    method: str  # "token" or "certificate"
    name: str
    token_id: str | None = None

    def __str__(self) -> str:
        return f"{self.method}:{self.name}" + (f" ({self.token_id})" if self.token_id else "")


class AuthFailure(AdminError):
    def __init__(self, status: int, message: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(status, message)
        self.reason = reason  # bounded metric label
        self.retry_after = retry_after


class SimpleGuard:
    """Fallback brute-force guard: ``ban_after`` failures within ``window`` ban the bucket."""

    def __init__(self, ban_after: int = 20, window: float = 60.0, ban_seconds: float = 600.0,
                 max_entries: int = 10_000) -> None:
        self.ban_after, self.window, self.ban_seconds, self.max_entries = ban_after, window, ban_seconds, max_entries
        self._fails: collections.OrderedDict[Hashable, collections.deque[float]] = collections.OrderedDict()
        self._banned: dict[Hashable, float] = {}

    def check(self, key: Hashable) -> None:
        until = self._banned.get(key)
        if until is not None:
            if time.monotonic() < until:
                raise permission_denied("too many failed admin authentications; temporarily banned",
                                        label="bruteforce_ban")
            del self._banned[key]

    def failure(self, key: Hashable) -> None:
        now = time.monotonic()
        q = self._fails.setdefault(key, collections.deque(maxlen=self.ban_after))
        self._fails.move_to_end(key)
        q.append(now)
        if len(q) >= self.ban_after and now - q[0] <= self.window:
            self._banned[key] = now + self.ban_seconds
            del self._fails[key]
            log.warning("admin: address bucket banned for %.0f s", self.ban_seconds)
        while len(self._fails) > self.max_entries:
            self._fails.popitem(last=False)

    def success(self, key: Hashable) -> None:
        self._fails.pop(key, None)

    def snapshot(self) -> dict[str, int]:
        now = time.monotonic()
        return {"tracked": len(self._fails) + len(self._banned),
                "banned": sum(1 for u in self._banned.values() if now < u), "backing_off": 0}


def build_token_authenticator(settings: AdminSettings, app: Any, *, state: Any = None) -> Any | None:
    """Build the admin token verifier from the plugin registry, or None when no token store is set."""
    if settings.token_store is None:
        return None
    name = settings.token_authenticator
    reg = app.registry.entries.get("auth", {}).get(name)
    if reg is None:
        have = ", ".join(sorted(app.registry.entries.get("auth", {}))) or "none"
        raise ConfigError(f"[proxy.admin] token_store needs the {name!r} authenticator; add the plugin that "
                          f"provides it (auth_jwt) to [swqos] plugins (auth implementations loaded: {have})")
    problems: list[str] = []
    cfg_dir = app.config.base_dir
    built = schema.build(reg.config, {"store": str(settings.token_store), "accept_roles": ["admin"]},
                         where="[proxy.admin]", base_dir=cfg_dir, problems=problems) if reg.config else None
    if problems:
        raise ConfigError(problems)
    ctx = BuildContext(name=f"admin-{name}", kind="auth", process="proxy", config_dir=cfg_dir,
                       logger=logging.getLogger(f"swqos.admin.{name}"), state=state)
    try:
        return reg.factory(built, ctx)
    except ConfigError as exc:
        raise ConfigError([f"[proxy.admin]: {p}" for p in exc.problems]) from None


class AdminAuth:
    def __init__(self, settings: AdminSettings, authenticator: Any | None) -> None:
        self.settings = settings
        self.authenticator = authenticator
        guard = getattr(authenticator, "guard", None)
        ok = guard is not None and all(callable(getattr(guard, m, None)) for m in ("check", "failure", "snapshot"))
        self.guard: Any = guard if ok else SimpleGuard()

    async def authenticate(self, headers: dict[str, str], client: ClientAddress,
                           certificate: str | None) -> Actor:
        """Return the operator or raise :class:`AuthFailure`. ``certificate`` is the subject of a
        client certificate the TLS layer verified against ``client_ca`` (None without one)."""
        authorization = headers.get("authorization")
        if authorization is None:
            if certificate is not None and not self.settings.require_token_with_mtls:
                return Actor("certificate", certificate)
            self._refuse_missing(client)
        if self.authenticator is None:
            # No token store: only certificates authenticate; a token is a wrong credential here.
            self._count(client)
            raise AuthFailure(401, "admin tokens are not enabled on this listener", "tokens_disabled")
        head = RequestHead(rpc="Health", peer=client.peer, metadata=(("authorization", authorization),))
        try:
            principal = await self.authenticator.authenticate(head, client)
        except Rejection as exc:
            # The authenticator has counted this failure against the client's bucket already.
            raise AuthFailure(_STATUS.get(exc.code, 401), f"admin credential refused: {exc.reason}",
                              exc.label if exc.label else "refused", exc.retry_after) from None
        except Exception:
            log.exception("admin token verification raised")
            self._count(client)
            raise AuthFailure(401, "admin credential could not be verified", "error") from None
        if principal is None:  # not an admin token at all (a JWT, garbage): same as none
            self._refuse_missing(client)
        if principal.role != "admin":
            self._count(client)
            raise AuthFailure(403, "this token is not an admin token", "role")
        return Actor("token", principal.subject, principal.token_id)

    def _count(self, client: ClientAddress) -> None:
        try:
            self.guard.failure(client.key)
        except Exception:  # counting is best effort; the refusal stands
            log.exception("admin brute-force guard failed")

    def _refuse_missing(self, client: ClientAddress) -> None:
        try:
            self.guard.check(client.key)  # a banned address is told so, and stays banned
        except Rejection as exc:
            raise AuthFailure(_STATUS.get(exc.code, 403), exc.reason, exc.label or "banned",
                              exc.retry_after) from None
        self._count(client)
        raise AuthFailure(401, "missing admin credential: send 'Authorization: Bearer <admin API token>'",
                          "no_credential")
