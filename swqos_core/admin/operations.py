"""What the admin API can do, independent of HTTP: each operation calls the loaded layers.

Layers are found by duck typing, so any plugin can take part by having the method:

=================== ===================================================== ======================
operation           layer method (any layer kind)                         first-party provider
=================== ===================================================== ======================
revoke-trader       ``revoke_subject(sub)``                               auth_jwt ``jwt``
restore-trader      ``restore_subject(sub) -> bool``                      auth_jwt ``jwt``
revoke-token        ``revoke_token(jti)``                                 auth_jwt ``jwt``
restore-token       ``restore_token(jti) -> bool``                        auth_jwt ``jwt``
set-allowlist       ``set_allowlist(sub, cidrs | None)``                  auth_jwt ``jwt``
set-quota           ``set_trader_quota(sub, rate=, sustained=) -> dict``  ratelimit ``gcra``
clear-quota         ``clear_trader_quota(sub) -> bool``                   ratelimit ``gcra``
reload-cdn          ``reload()`` or ``refresh_now()`` (sync or async)     cdn_* resolvers
=================== ===================================================== ======================

When no loaded layer has the method the operation fails with a clear error (HTTP 501), never
silently. Every method runs on the event loop, like the requests it affects, so a change applies
to the very next request.

A trader is *known* when this proxy has seen it authenticate since it started, or a layer holds
policy for it (an allowlist, a revocation, a quota override). Operations naming an unknown trader
are refused (HTTP 404) unless ``force`` is set: that catches a mistyped ``sub`` while still
letting the marketplace push an allowlist for a trader before its first request.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from typing import Any

from swqos_core.errors import Rejection
from swqos_core.identity import to_base58

log = logging.getLogger("swqos.admin")

MAX_ID = 256
MAX_CIDRS = 1024


class AdminError(Exception):
    """An operation refused or failed; ``status`` is the HTTP status, ``message`` is for the operator."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class KnownSubjects:
    """Subjects seen authenticated, least recently seen dropped first (bounded)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._d: collections.OrderedDict[str, None] = collections.OrderedDict()

    def add(self, sub: str) -> None:
        if self.max_entries <= 0:
            return
        self._d[sub] = None
        self._d.move_to_end(sub)
        if len(self._d) > self.max_entries:
            self._d.popitem(last=False)

    def __contains__(self, sub: object) -> bool:
        return sub in self._d

    def __len__(self) -> int:
        return len(self._d)


def _ident(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not (0 < len(value) <= MAX_ID) or not value.isprintable():
        raise AdminError(400, f"{key!r} must be a non-empty printable string of at most {MAX_ID} characters")
    return value


def _flag(params: dict[str, Any], key: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise AdminError(400, f"{key!r} must be true or false")
    return value


def _only(params: dict[str, Any], *allowed: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise AdminError(400, f"unknown parameter(s) {', '.join(unknown)} (allowed: {', '.join(allowed) or 'none'})")


class Operations:
    """The admin operations of one host-proxy."""

    def __init__(self, *, app: Any, state: Any, enclave: Any, known_subjects_max: int = 100_000) -> None:
        self.app = app
        self.state = state
        self.enclave = enclave
        self.known = KnownSubjects(known_subjects_max)
        self.signatures_returned = 0

    # --- pipeline observer -----------------------------------------------------------------
    def observe(self, decision: Any) -> None:
        if decision.subject is not None:
            self.known.add(decision.subject)
        if decision.outcome == "OK" and decision.rpc == "SignCertificateVerify":
            self.signatures_returned += 1

    # --- helpers ---------------------------------------------------------------------------
    def _layers(self) -> list[tuple[str, str, Any]]:
        out = []
        for kind, items in self.app.layers.items():
            for name, obj in items:
                out.append((kind, name, obj))
        return out

    def _supporting(self, method: str, operation: str, hint: str) -> list[tuple[str, Any]]:
        found = [(f"{kind}.{name}", obj) for kind, name, obj in self._layers()
                 if callable(getattr(obj, method, None))]
        if not found:
            raise AdminError(501, f"{operation}: no loaded layer supports it (it needs a layer with "
                                  f"{method}(); {hint})")
        return found

    def _policy_states(self) -> list[dict[str, Any]]:
        states = []
        for _, _, obj in self._layers():
            fn = getattr(obj, "state", None)
            if callable(fn):
                try:
                    st = fn()
                except Exception:  # a layer's view is best effort; the operation itself decides
                    log.exception("layer state() failed")
                    continue
                if isinstance(st, dict):
                    states.append(st)
        return states

    def is_known(self, sub: str) -> bool:
        if sub in self.known:
            return True
        for st in self._policy_states():
            if sub in st.get("allowlist", {}) or sub in st.get("revoked", {}).get("sub", ()):
                return True
        for _, _, obj in self._layers():
            knows = getattr(obj, "knows_subject", None)
            if callable(knows) and knows(sub):
                return True
            quota = getattr(obj, "trader_quota", None)
            if callable(quota):
                with _suppress():
                    if quota(sub).get("source") not in (None, "default"):
                        return True
        return False

    def _require_known(self, sub: str, force: bool) -> None:
        if not force and not self.is_known(sub):
            raise AdminError(404, f"unknown trader {sub!r}: not seen since this proxy started and not in any "
                                  "allowlist, revocation list or quota table; check the spelling, or resend with "
                                  "force=true (CLI: --force) to act on a trader that has not connected yet")

    def _revoked(self, key: str) -> set[str] | None:
        """Union of the revocation lists the layers report, or None if no layer reports any."""
        out: set[str] | None = None
        for st in self._policy_states():
            revoked = st.get("revoked")
            if isinstance(revoked, dict) and key in revoked:
                out = (out or set()) | set(revoked[key])
        return out

    # --- read ------------------------------------------------------------------------------
    async def status(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        st = self.state
        enclave: dict[str, Any] = {"address": getattr(self.enclave, "address", None),
                                   "connected": st.enclave_connected, "reachable": False}
        ident = st.enclave_identity
        try:
            # A fresh identity query: proves the enclave answers now and reads its own counter.
            public_key, signatures, measurement, _ = await asyncio.wait_for(self.enclave.identity(b"", 0), 2.0)
            enclave.update(reachable=True, public_key=to_base58(public_key), measurement=measurement,
                           signatures=signatures)
        except (Rejection, TimeoutError, OSError, ValueError) as exc:
            enclave["error"] = getattr(exc, "reason", None) or type(exc).__name__
            if ident is not None:
                enclave.update(public_key=to_base58(ident.public_key), measurement=ident.measurement,
                               signatures_at_connect=ident.signatures)
        revocation = {}
        for name, obj in self.app.layers.get("revocation", []):
            engine = getattr(obj, "engine", obj)
            snap = getattr(engine, "snapshot", None)
            if callable(snap):
                with _suppress():
                    revocation[name] = snap()
        return {
            "version": st.release_version,
            "identity": enclave.get("public_key"),
            "enclave": enclave,
            "signatures": {"enclave_reported": enclave.get("signatures"),
                           "host_returned_since_start": self.signatures_returned},
            "serving": st.serving,
            "not_serving_reason": st.not_serving_reason(),
            "halted": st.halted,
            "halt_reasons": st.halt_reasons,
            "draining": st.draining,
            "kill_switch": revocation,
            "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version}
                        for p in self.app.plugins],
            "layers": {kind: [name for name, _ in items] for kind, items in self.app.layers.items() if items},
            "known_traders": len(self.known),
        }

    async def trader(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "sub")
        sub = _ident(params, "sub")
        out: dict[str, Any] = {"sub": sub, "known": self.is_known(sub), "seen": sub in self.known}
        revoked = self._revoked("sub")
        if revoked is not None:
            out["revoked"] = sub in revoked
        for st in self._policy_states():
            if "allowlist" in st:
                out["allowlist"] = st["allowlist"].get(sub)
        for kind, name, obj in self._layers():
            quota = getattr(obj, "trader_quota", None)
            if callable(quota):
                out.setdefault("quota", {})[f"{kind}.{name}"] = quota(sub)
        return out

    # --- revocation --------------------------------------------------------------------------
    async def revoke_trader(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "sub", "force")
        sub, force = _ident(params, "sub"), _flag(params, "force")
        layers = self._supporting("revoke_subject", "revoke-trader", "load plugin auth_jwt (jwt)")
        self._require_known(sub, force)
        for _, obj in layers:
            obj.revoke_subject(sub)
        return {"sub": sub, "revoked": True, "layers": [n for n, _ in layers]}

    async def restore_trader(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "sub")
        sub = _ident(params, "sub")
        layers = self._supporting("restore_subject", "restore-trader", "load plugin auth_jwt (jwt)")
        revoked = self._revoked("sub")
        if revoked is not None and sub not in revoked:
            raise AdminError(409, f"trader {sub!r} is not revoked")
        still = [n for n, obj in layers if obj.restore_subject(sub) is False]
        if still:
            raise AdminError(409, f"trader {sub!r} is still revoked by the revocation file of {', '.join(still)}; "
                                  "remove it from that file to restore the trader")
        return {"sub": sub, "revoked": False, "layers": [n for n, _ in layers]}

    async def revoke_token(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "jti")
        jti = _ident(params, "jti")
        # No unknown-token check: JWTs are stateless, and revoking an issued jti before it is
        # ever presented is exactly what a marketplace-side leak calls for.
        layers = self._supporting("revoke_token", "revoke-token", "load plugin auth_jwt (jwt)")
        for _, obj in layers:
            obj.revoke_token(jti)
        return {"jti": jti, "revoked": True, "layers": [n for n, _ in layers]}

    async def restore_token(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "jti")
        jti = _ident(params, "jti")
        layers = self._supporting("restore_token", "restore-token", "load plugin auth_jwt (jwt)")
        revoked = self._revoked("jti")
        if revoked is not None and jti not in revoked:
            raise AdminError(409, f"token {jti!r} is not revoked")
        still = [n for n, obj in layers if obj.restore_token(jti) is False]
        if still:
            raise AdminError(409, f"token {jti!r} is still revoked by the revocation file of {', '.join(still)}")
        return {"jti": jti, "revoked": False, "layers": [n for n, _ in layers]}

    # --- allowlist and quotas -------------------------------------------------------------------
    async def set_allowlist(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "sub", "cidrs", "force")
        sub, force = _ident(params, "sub"), _flag(params, "force")
        cidrs = params.get("cidrs")
        if cidrs is not None and (not isinstance(cidrs, list) or len(cidrs) > MAX_CIDRS
                                  or not all(isinstance(c, str) and 0 < len(c) <= 64 for c in cidrs)):
            raise AdminError(400, f"'cidrs' must be a list of at most {MAX_CIDRS} CIDR strings, or null to drop "
                                  "the admin override")
        layers = self._supporting("set_allowlist", "set-allowlist", "load plugin auth_jwt (jwt)")
        self._require_known(sub, force)
        try:
            for _, obj in layers:
                obj.set_allowlist(sub, cidrs)
        except ValueError as exc:
            raise AdminError(400, f"invalid allowlist: {exc}") from None
        return {"sub": sub, "cidrs": cidrs, "layers": [n for n, _ in layers]}

    async def set_quota(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "sub", "rate", "sustained", "force")
        sub, force = _ident(params, "sub"), _flag(params, "force")
        rate, sustained = params.get("rate"), params.get("sustained")
        if rate is None and sustained is None:
            raise AdminError(400, "give 'rate' and/or 'sustained' as {count, period, burst}")
        for key, value in (("rate", rate), ("sustained", sustained)):
            if value is not None and not isinstance(value, dict):
                raise AdminError(400, f"{key!r} must be an object {{count, period, burst}}")
        layers = self._supporting("set_trader_quota", "set-quota", "load plugin ratelimit (gcra)")
        self._require_known(sub, force)
        effective = {}
        try:
            for name, obj in layers:
                effective[name] = obj.set_trader_quota(sub, rate=rate, sustained=sustained)
        except (ValueError, TypeError) as exc:
            raise AdminError(400, f"invalid quota: {exc}") from None
        return {"sub": sub, "quota": effective}

    async def clear_quota(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "sub")
        sub = _ident(params, "sub")
        layers = self._supporting("clear_trader_quota", "clear-quota", "load plugin ratelimit (gcra)")
        cleared = [name for name, obj in layers if obj.clear_trader_quota(sub)]
        if not cleared:
            raise AdminError(409, f"trader {sub!r} has no quota override set through the admin API")
        return {"sub": sub, "cleared": cleared}

    # --- CDN and drain ---------------------------------------------------------------------------
    async def reload_cdn(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        found = []
        for name, obj in self.app.layers.get("client_ip", []):
            fn = getattr(obj, "reload", None) or getattr(obj, "refresh_now", None)
            if callable(fn):
                found.append((name, obj, fn))
        if not found:
            raise AdminError(501, "reload-cdn: no loaded client_ip resolver can reload its ranges (load a cdn_* "
                                  "plugin, e.g. cdn_cloudflare)")
        out = {}
        for name, obj, fn in found:
            try:
                result = fn()
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:  # report per layer; the old list stays in use
                log.exception("CDN reload of %s failed", name)
                out[name] = {"changed": False, "error": type(exc).__name__}
                continue
            entry: dict[str, Any] = {"changed": bool(result)}
            describe = getattr(obj, "describe", None)
            if callable(describe):
                with _suppress():
                    entry["ranges"] = describe()
            out[name] = entry
        return {"resolvers": out}

    async def drain(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        self.state.set_draining(True)
        return {"draining": True, "serving": self.state.serving}

    async def undrain(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        self.state.set_draining(False)
        return {"draining": False, "serving": self.state.serving}


class _suppress:
    """``contextlib.suppress(Exception)`` that also logs: a layer's optional view must not fail an operation."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> bool:
        if exc is not None and isinstance(exc, Exception):
            log.warning("optional layer view failed: %s", type(exc).__name__)
            return True
        return False


#: operation → (HTTP method, Operations method name, changes state)
ROUTES: dict[str, tuple[str, str, bool]] = {
    "status": ("GET", "status", False),
    "trader": ("POST", "trader", False),
    "revoke-trader": ("POST", "revoke_trader", True),
    "restore-trader": ("POST", "restore_trader", True),
    "revoke-token": ("POST", "revoke_token", True),
    "restore-token": ("POST", "restore_token", True),
    "set-allowlist": ("POST", "set_allowlist", True),
    "set-quota": ("POST", "set_quota", True),
    "clear-quota": ("POST", "clear_quota", True),
    "reload-cdn": ("POST", "reload_cdn", True),
    "drain": ("POST", "drain", True),
    "undrain": ("POST", "undrain", True),
}
