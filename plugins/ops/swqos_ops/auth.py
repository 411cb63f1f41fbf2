"""Who may call the admin API: an admin token, or a verified mTLS client certificate.

Tokens are verified by an authenticator that some loaded plugin registered (kind ``auth``),
named explicitly in ``[layers.service.admin] token_authenticator`` and configured by the explicit
table ``[layers.service.admin.token_auth]``, validated with :func:`swqos_core.schema.build` against
that registration's own settings class, exactly as ``[layers.auth.<name>]`` would be. Nothing is
guessed: this plugin knows only the kernel's :class:`~swqos_core.layers.Authenticator` Protocol and
accepts a Principal only when its role is ``admin``.

Failures (no credential, a refused token, a non-admin role) are counted per client address bucket
by the kernel's one brute-force guard (:mod:`swqos_core.guard`), checked before any token is
verified: backoff after 5 failures in a row, a ban after 20 in 60 s (settings in
``[layers.service.admin.brute_force]``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc

from swqos_core import schema
from swqos_core.errors import ConfigError, Rejection
from swqos_core.extensions import Actor, AdminError
from swqos_core.guard import BruteForceGuard
from swqos_core.layers import Authenticator, BuildContext, ClientAddress, Closable, RequestHead, Startable
from swqos_ops.settings import WHERE, AdminSettings

log = logging.getLogger("swqos.admin.auth")

_STATUS = {grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
           grpc.StatusCode.RESOURCE_EXHAUSTED: 429}


class AuthFailure(AdminError):
    def __init__(self, status: int, message: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(status, message)
        self.reason = reason  # bounded metric label
        self.retry_after = retry_after


@dataclass
class TokenVerifier:
    """The authenticator built for admin tokens, with the lifecycle it declares."""

    name: str
    authenticator: Authenticator

    async def start(self) -> None:
        if isinstance(self.authenticator, Startable):
            await self.authenticator.start()

    async def close(self) -> None:
        if isinstance(self.authenticator, Closable):
            await self.authenticator.close()


def build_token_verifier(settings: AdminSettings, app: Any) -> TokenVerifier | None:
    """Build the named authenticator from its registration and the explicit ``token_auth`` table."""
    name = settings.token_authenticator
    if name is None:
        return None
    where = f"{WHERE[:-1]}.token_auth]"
    regs = app.registry.entries.get("auth", {})
    reg = regs.get(name)
    if reg is None:
        have = ", ".join(sorted(regs)) or "none"
        raise ConfigError(f"{WHERE} token_authenticator = {name!r}: no loaded plugin registers an auth "
                          f"implementation of that name (auth implementations loaded: {have}; is its plugin "
                          "listed in [swqos] plugins?)")
    problems: list[str] = []
    if reg.config is None:
        if settings.token_auth:
            problems.append(f"{where}: {name!r} takes no settings")
        built = None
    else:
        built = schema.build(reg.config, settings.token_auth, where=where, base_dir=app.config.base_dir,
                             problems=problems)
    if problems:
        raise ConfigError(problems)
    ctx = BuildContext(name=f"admin-{name}", kind="auth", process="proxy", config_dir=app.config.base_dir,
                       logger=logging.getLogger(f"swqos.admin.{name}"), state=app.state)
    try:
        obj = reg.factory(built, ctx)
    except ConfigError as exc:
        raise ConfigError([f"{where}: {p}" for p in exc.problems]) from None
    if not isinstance(obj, Authenticator):
        raise ConfigError(f"{where}: {name!r} built a {type(obj).__name__}, not an Authenticator")
    return TokenVerifier(name, obj)


class AdminAuth:
    def __init__(self, settings: AdminSettings, verifier: TokenVerifier | None) -> None:
        self.settings = settings
        self.verifier = verifier
        self.guard = BruteForceGuard(settings.brute_force, name="admin")

    async def authenticate(self, headers: dict[str, str], client: ClientAddress,
                           certificate: str | None) -> Actor:
        """Return the operator or raise :class:`AuthFailure`. ``certificate`` is the subject of a
        client certificate the TLS layer verified against ``client_ca`` (None without one)."""
        authorization = headers.get("authorization")
        if authorization is None and certificate is not None and not self.settings.require_token_with_mtls:
            return Actor("certificate", certificate)
        # Others' failures from this address (the one local bucket, a shared socket) must never
        # lock out the right token: a blocked address still gets its token verified (the
        # verifier's Argon2 pool and per-id throttle bound what that costs), and only a failure
        # is answered with the block.
        blocked = self.guard.verdict(client.key)
        if authorization is None:
            self._refuse_missing(client, blocked)
        if self.verifier is None:
            # No token verifier: only certificates authenticate; a token is a wrong credential here.
            self._count(client)
            raise AuthFailure(401, "admin tokens are not enabled on this listener", "tokens_disabled")
        head = RequestHead(rpc="Health", peer=client.peer, metadata=(("authorization", authorization),))
        try:
            principal = await self.verifier.authenticator.authenticate(head, client)
        except Rejection as exc:
            self._count(client)
            if blocked is not None:
                raise self._blocked(blocked) from None
            raise AuthFailure(_STATUS.get(exc.code, 401), f"admin credential refused: {exc.reason}",
                              exc.label if exc.label else "refused", exc.retry_after) from None
        except Exception:
            log.exception("admin token verification raised")
            self._count(client)
            raise AuthFailure(401, "admin credential could not be verified", "error") from None
        if principal is None:  # not a token of this verifier at all (a JWT, garbage): same as none
            self._refuse_missing(client, blocked)
        if principal.role != "admin":
            self._count(client)
            raise AuthFailure(403, "this token is not an admin token (role must be admin)", "role")
        self.guard.success(client.key)
        return Actor("token", principal.subject, principal.token_id)

    @staticmethod
    def _blocked(exc: Rejection) -> AuthFailure:
        return AuthFailure(_STATUS.get(exc.code, 403), exc.reason, exc.label or "banned", exc.retry_after)

    def _count(self, client: ClientAddress) -> None:
        self.guard.failure(client.key)

    def _refuse_missing(self, client: ClientAddress, blocked: Rejection | None = None) -> None:
        self._count(client)
        if blocked is not None:
            raise self._blocked(blocked)
        raise AuthFailure(401, "missing admin credential: send 'Authorization: Bearer <admin API token>'",
                          "no_credential")
