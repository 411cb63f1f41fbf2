"""ratelimit's admin operations: per-trader quota overrides, set and cleared at run time.

Registered through ``swqos_register_admin_operations`` for the ``gcra`` layers this proxy runs.
A change applies from the next request on; the trader's current state is kept (no reset). The
listener has already checked the parameter names and that the trader is known (or ``force``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swqos_core.extensions import Actor, AdminError, AdminOperation
from swqos_ratelimit.limiter import GcraRateLimiter

SUB = "the trader (JWT sub)"
QUOTA = "{count, period, burst}"


class QuotaPolicy:
    """The limiters' view of traders (a :class:`~swqos_core.extensions.SubjectPolicy`): a trader
    with a quota override (from the config or the admin API) is known."""

    def __init__(self, layers: Sequence[tuple[str, GcraRateLimiter]]) -> None:
        self.layers = layers

    def knows_subject(self, sub: str) -> bool:
        return any(layer.trader_quota(sub)["source"] != "default" for _, layer in self.layers)

    def describe_subject(self, sub: str) -> Mapping[str, Any]:
        return {"quota": {f"rate_limit.{name}": layer.trader_quota(sub) for name, layer in self.layers}}


def _sub(params: Mapping[str, Any]) -> str:
    sub = params.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= 256 or not sub.isprintable():
        raise AdminError(400, "'sub' must be a non-empty printable string of at most 256 characters")
    return sub


class QuotaOperations:
    def __init__(self, layers: Sequence[tuple[str, GcraRateLimiter]]) -> None:
        self.layers = list(layers)
        self.policy = QuotaPolicy(self.layers)

    def all(self) -> list[AdminOperation]:
        return [
            AdminOperation("set-quota", self.set_quota, "give a trader its own quotas until clear-quota",
                           params={"sub": SUB, "rate": f"short-window quota {QUOTA}",
                                   "sustained": f"long-window quota {QUOTA}",
                                   "force": "act even if this proxy has never seen the trader"},
                           subject_param="sub", policy=self.policy),
            AdminOperation("clear-quota", self.clear_quota, "drop a trader's quota override set through the "
                           "admin API", params={"sub": SUB}, policy=self.policy),
        ]

    async def set_quota(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        sub = _sub(params)
        rate, sustained = params.get("rate"), params.get("sustained")
        if rate is None and sustained is None:
            raise AdminError(400, "give 'rate' and/or 'sustained' as {count, period, burst}")
        for key, value in (("rate", rate), ("sustained", sustained)):
            if value is not None and not isinstance(value, dict):
                raise AdminError(400, f"{key!r} must be an object {{count, period, burst}}")
        effective = {}
        try:
            for name, layer in self.layers:
                # A policy record in the state store: survives restarts, applies on every replica.
                effective[f"rate_limit.{name}"] = await layer.persist_trader_quota(
                    sub, rate=rate, sustained=sustained, actor=str(actor))
        except (ValueError, TypeError) as exc:
            raise AdminError(400, f"invalid quota: {exc}") from None
        return {"sub": sub, "quota": effective}

    async def clear_quota(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        sub = _sub(params)
        cleared = [f"rate_limit.{name}" for name, layer in self.layers
                   if await layer.persist_clear_trader_quota(sub, actor=str(actor))]
        if not cleared:
            raise AdminError(409, f"trader {sub!r} has no quota override set through the admin API")
        return {"sub": sub, "cleared": cleared}


def operations_for(app: Any) -> list[AdminOperation]:
    """The operations for the ``gcra`` layers of ``app`` (none when it runs none)."""
    layers = [(name, obj) for name, obj in app.layers.get("rate_limit", []) if isinstance(obj, GcraRateLimiter)]
    return QuotaOperations(layers).all() if layers else []
