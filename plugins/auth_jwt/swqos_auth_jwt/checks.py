"""What ``swqos config check`` reports about auth_jwt's layers (the ``swqos_check_config`` hook)."""

from __future__ import annotations

from typing import Any

from swqos_auth_jwt.issuer import DEV_ISSUER
from swqos_auth_jwt.jwt_auth import JwtAuthenticator


def config_problems(app: Any, strict: bool) -> list[str]:
    """Strict only: a jwt layer trusting the development issuer (the dev stack's throwaway keys)."""
    if not strict:
        return []
    problems = []
    for name, layer in app.layers.get("auth", []):
        if isinstance(layer, JwtAuthenticator) and DEV_ISSUER in (layer.s.issuer, layer.s.probe_issuer):
            problems.append(f"[layers.auth.{name}] issuer = {DEV_ISSUER!r} is the development stack's issuer: "
                            "a public proxy must trust only the marketplace's own issuer keys")
    return problems
