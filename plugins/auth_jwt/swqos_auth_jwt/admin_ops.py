"""auth_jwt's admin operations: revoke and restore traders and tokens, set IP allowlists.

Registered through ``swqos_register_admin_operations`` for the ``jwt`` layers this proxy runs,
and served by whichever plugin serves the admin API. Every change runs on the event loop, like the
requests it affects, so it applies to the very next request. The listener has already checked the
parameter names and, for the operations naming a trader, that the trader is known (or ``force``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swqos_auth_jwt import api_tokens
from swqos_auth_jwt.api_tokens import ApiTokenAuthenticator
from swqos_auth_jwt.jwt_auth import JwtAuthenticator
from swqos_core.extensions import Actor, AdminError, AdminOperation

MAX_ID = 256
MAX_CIDRS = 1024
SUB = "the trader (JWT sub)"
FORCE = "act even if this proxy has never seen the trader"


def _ident(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not (0 < len(value) <= MAX_ID) or not value.isprintable():
        raise AdminError(400, f"{key!r} must be a non-empty printable string of at most {MAX_ID} characters")
    return value


class JwtPolicy:
    """The ``jwt`` layers' view of traders (a :class:`~swqos_core.extensions.SubjectPolicy`)."""

    def __init__(self, layers: Sequence[tuple[str, JwtAuthenticator]]) -> None:
        self.layers = layers

    def knows_subject(self, sub: str) -> bool:
        for _, layer in self.layers:
            state = layer.state()
            if sub in state["allowlist"] or sub in state["revoked"].get("sub", ()):
                return True
        return False

    def describe_subject(self, sub: str) -> Mapping[str, Any]:
        revoked = False
        allowlist: list[str] | None = None
        for _, layer in self.layers:
            state = layer.state()
            revoked = revoked or sub in state["revoked"].get("sub", ())
            if sub in state["allowlist"]:
                allowlist = list(state["allowlist"][sub])
        return {"revoked": revoked, "allowlist": allowlist}

    def revoked(self, key: str) -> set[str]:
        out: set[str] = set()
        for _, layer in self.layers:
            out |= set(layer.state()["revoked"].get(key, ()))
        return out


class JwtOperations:
    def __init__(self, layers: Sequence[tuple[str, JwtAuthenticator]]) -> None:
        self.layers = list(layers)
        self.policy = JwtPolicy(self.layers)
        self.names = [f"auth.{name}" for name, _ in self.layers]

    def all(self) -> list[AdminOperation]:
        p = self.policy
        return [
            AdminOperation("revoke-trader", self.revoke_trader, "refuse every token of a trader from the next "
                           "request on", params={"sub": SUB, "force": FORCE}, subject_param="sub", policy=p),
            AdminOperation("restore-trader", self.restore_trader, "lift an admin revocation of a trader",
                           params={"sub": SUB}, policy=p),
            AdminOperation("revoke-token", self.revoke_token, "refuse one token (jti) from the next request on",
                           params={"jti": "the token's jti claim"}, policy=p),
            AdminOperation("restore-token", self.restore_token, "lift an admin revocation of a token",
                           params={"jti": "the token's jti claim"}, policy=p),
            AdminOperation("set-allowlist", self.set_allowlist, "replace a trader's IP allowlist (null drops the "
                           "admin override)", params={"sub": SUB, "cidrs": "list of CIDRs, or null", "force": FORCE},
                           subject_param="sub", policy=p),
        ]

    async def revoke_trader(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        sub = _ident(params, "sub")
        for _, layer in self.layers:
            if layer.policy is not None:  # persisted in the state store, applied on every replica
                await layer.policy.revoke("sub", sub, str(actor))
            else:
                layer.revoke_subject(sub)
        return {"sub": sub, "revoked": True, "layers": self.names}

    async def restore_trader(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        sub = _ident(params, "sub")
        if sub not in self.policy.revoked("sub"):
            raise AdminError(409, f"trader {sub!r} is not revoked")
        still = [f"auth.{n}" for n, layer in self.layers
                 if (await layer.policy.restore("sub", sub, str(actor)) if layer.policy is not None
                     else layer.restore_subject(sub)) is False]
        if still:
            raise AdminError(409, f"trader {sub!r} is still revoked by the revocation file of {', '.join(still)}; "
                                  "remove it from that file to restore the trader")
        return {"sub": sub, "revoked": False, "layers": self.names}

    async def revoke_token(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        # No unknown-token check: JWTs are stateless, and revoking an issued jti before it is ever
        # presented is exactly what a marketplace-side leak calls for.
        jti = _ident(params, "jti")
        for _, layer in self.layers:
            if layer.policy is not None:
                await layer.policy.revoke("jti", jti, str(actor))
            else:
                layer.revoke_token(jti)
        return {"jti": jti, "revoked": True, "layers": self.names}

    async def restore_token(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        jti = _ident(params, "jti")
        if jti not in self.policy.revoked("jti"):
            raise AdminError(409, f"token {jti!r} is not revoked")
        still = [f"auth.{n}" for n, layer in self.layers
                 if (await layer.policy.restore("jti", jti, str(actor)) if layer.policy is not None
                     else layer.restore_token(jti)) is False]
        if still:
            raise AdminError(409, f"token {jti!r} is still revoked by the revocation file of {', '.join(still)}")
        return {"jti": jti, "revoked": False, "layers": self.names}

    async def set_allowlist(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        sub = _ident(params, "sub")
        cidrs = params.get("cidrs")
        if cidrs is not None and (not isinstance(cidrs, list) or len(cidrs) > MAX_CIDRS
                                  or not all(isinstance(c, str) and 0 < len(c) <= 64 for c in cidrs)):
            raise AdminError(400, f"'cidrs' must be a list of at most {MAX_CIDRS} CIDR strings, or null to drop "
                                  "the admin override")
        try:
            for _, layer in self.layers:
                if layer.policy is not None:
                    await layer.policy.set_allowlist(sub, cidrs, str(actor))
                else:
                    layer.set_allowlist(sub, cidrs)
        except ValueError as exc:
            raise AdminError(400, f"invalid allowlist: {exc}") from None
        return {"sub": sub, "cidrs": cidrs, "layers": self.names}


class ApiTokenOperations:
    """List and revoke the API tokens of the ``api_token`` layers (their stores are files on this host)."""

    def __init__(self, layers: Sequence[tuple[str, ApiTokenAuthenticator]]) -> None:
        self.layers = list(layers)

    def all(self) -> list[AdminOperation]:
        return [
            AdminOperation("api-tokens", self.list_tokens, "list the API tokens (ids, names, roles; never a secret "
                           "or a hash)", mutating=False),
            AdminOperation("revoke-api-token", self.revoke, "revoke API tokens by id or name, from the next request on",
                           params={"token": "a token id (swqat_<id>_…) or a name (revokes every token with it)"}),
        ]

    async def list_tokens(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        tokens = []
        for name, layer in self.layers:
            for rec in sorted(api_tokens.read_store(layer.s.store).values(), key=lambda r: r.created_at):
                tokens.append({"layer": f"auth.{name}", "id": rec.id, "name": rec.name, "role": rec.role,
                               "created_at": rec.created_at, "expires_at": rec.expires_at, "revoked": rec.revoked})
        return {"tokens": tokens}

    async def revoke(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        which = _ident(params, "token")
        revoked: list[str] = []
        seen = set()
        for _, layer in self.layers:
            if layer.s.store in seen:
                continue
            seen.add(layer.s.store)
            revoked += api_tokens.revoke_token(layer.s.store, which)
        if not revoked:
            raise AdminError(404, f"no active API token has the id or name {which!r}")
        for _, layer in self.layers:
            layer.reload_store()  # in force from the very next request, not the next reload interval
        return {"revoked": revoked}


def operations_for(app: Any) -> list[AdminOperation]:
    """The operations for the ``jwt`` and ``api_token`` layers of ``app`` (none when it runs neither)."""
    auth = app.layers.get("auth", [])
    jwt = [(name, obj) for name, obj in auth if isinstance(obj, JwtAuthenticator)]
    tokens = [(name, obj) for name, obj in auth if isinstance(obj, ApiTokenAuthenticator)]
    return (JwtOperations(jwt).all() if jwt else []) + (ApiTokenOperations(tokens).all() if tokens else [])
