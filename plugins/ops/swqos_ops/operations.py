"""The admin operations this plugin owns, and the generic checks every operation gets.

Every other operation comes from its plugin through ``swqos_register_admin_operations``
(``app.contributions.admin_operations``); this plugin serves them all the same way and names none
of them. Before a handler runs, the listener checks what the operation declared:

- parameters: only the names in ``AdminOperation.params`` (400 otherwise); ``force`` must be a
  boolean;
- the subject (``subject_param``): a non-empty printable string of at most 256 characters, and a
  trader that is *known*, i.e. seen authenticating since this proxy started, or held in some
  plugin's :class:`~swqos_core.extensions.SubjectPolicy` (an allowlist, a revocation, a quota).
  An unknown trader is refused (404) unless ``force`` is true: that catches a mistyped ``sub``
  while still letting the marketplace push an allowlist before a trader's first request.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping
from typing import Any

from swqos_core.errors import Rejection
from swqos_core.extensions import Actor, AdminError, AdminOperation, Decision, SubjectPolicy
from swqos_core.identity import to_base58

log = logging.getLogger("swqos.admin")

MAX_ID = 256


class KnownSubjects:
    """Subjects seen authenticated, least recently seen dropped first (bounded)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._d: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.signatures_returned = 0

    def observe(self, decision: Decision) -> None:
        """A decision observer: remembers the subject, counts signatures returned."""
        if decision.subject is not None and self.max_entries > 0:
            self._d[decision.subject] = None
            self._d.move_to_end(decision.subject)
            if len(self._d) > self.max_entries:
                self._d.popitem(last=False)
        if decision.outcome == "OK" and decision.rpc == "SignCertificateVerify":
            self.signatures_returned += 1

    def __contains__(self, sub: object) -> bool:
        return sub in self._d

    def __len__(self) -> int:
        return len(self._d)


def subject_value(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not (0 < len(value) <= MAX_ID) or not value.isprintable():
        raise AdminError(400, f"{key!r} must be a non-empty printable string of at most {MAX_ID} characters")
    return value


class OperationTable:
    """Every operation served, with its owner, and the subject checks that apply to them."""

    def __init__(self, operations: Mapping[str, tuple[str, AdminOperation]], known: KnownSubjects) -> None:
        self.operations = dict(operations)
        self.known = known
        policies: dict[int, tuple[str, SubjectPolicy]] = {}
        for owner, op in self.operations.values():
            if op.policy is not None:
                policies.setdefault(id(op.policy), (owner, op.policy))
        self.policies = list(policies.values())

    def get(self, name: str) -> AdminOperation | None:
        entry = self.operations.get(name)
        return entry[1] if entry else None

    def is_known(self, sub: str) -> bool:
        if sub in self.known:
            return True
        for owner, policy in self.policies:
            try:
                if policy.knows_subject(sub):
                    return True
            except Exception:  # one plugin's broken view must not decide for the others
                log.exception("subject policy of plugin %r failed", owner)
        return False

    def check(self, op: AdminOperation, params: Mapping[str, Any]) -> None:
        """The generic checks, before the handler runs. Raises AdminError."""
        unknown = sorted(set(params) - set(op.params))
        if unknown:
            allowed = ", ".join(op.params) or "none"
            raise AdminError(400, f"unknown parameter(s) {', '.join(unknown)[:200]} (allowed: {allowed})")
        force = params.get("force", False)
        if not isinstance(force, bool):
            raise AdminError(400, "'force' must be true or false")
        if op.subject_param is None:
            return
        sub = subject_value(params, op.subject_param)
        if not force and not self.is_known(sub):
            raise AdminError(404, f"unknown trader {sub!r}: not seen since this proxy started and not in any "
                                  "allowlist, revocation list or quota table; check the spelling, or resend with "
                                  "force=true (CLI: --force) to act on a trader that has not connected yet")

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": name, "owner": owner, "description": op.description, "mutating": op.mutating,
                 "method": "POST" if op.mutating else "GET", "params": dict(op.params),
                 "subject_param": op.subject_param}
                for name, (owner, op) in sorted(self.operations.items())]


class OwnOperations:
    """status, trader, operations, drain, undrain: what this plugin itself offers."""

    def __init__(self, app: Any, service: Any) -> None:
        self.app = app
        self.service = service  # the admin listener: its table holds every plugin's operations
        self.known: KnownSubjects = service.known

    @property
    def table(self) -> OperationTable:
        return self.service.table

    def all(self) -> list[AdminOperation]:
        return [
            AdminOperation("status", self.status, "version, identity, enclave, signature counts, halts, drain, "
                           "plugins and every plugin's status section", mutating=False),
            AdminOperation("operations", self.operations, "every admin operation this proxy serves", mutating=False),
            AdminOperation("trader", self.trader, "what this proxy and each plugin know about one trader",
                           mutating=False, params={"sub": "the trader (JWT sub)"}),
            AdminOperation("drain", self.drain, "stop accepting new signing requests (health turns NOT_SERVING)"),
            AdminOperation("undrain", self.undrain, "accept signing requests again"),
        ]

    async def status(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        st = self.app.state
        client = self.app.enclave
        enclave: dict[str, Any] = {"address": client.address if client is not None else None,
                                   "connected": st.enclave_connected, "reachable": False}
        ident = st.enclave_identity
        try:
            if client is None:
                raise ValueError("no enclave connection")
            # A fresh identity query: proves the enclave answers now and reads its own counter.
            public_key, signatures, measurement, _ = await asyncio.wait_for(client.identity(b"", 0), 2.0)
            enclave.update(reachable=True, public_key=to_base58(public_key), measurement=measurement,
                           signatures=signatures)
        except (Rejection, TimeoutError, OSError, ValueError) as exc:
            enclave["error"] = exc.reason if isinstance(exc, Rejection) else type(exc).__name__
            if ident is not None:
                enclave.update(public_key=to_base58(ident.public_key), measurement=ident.measurement,
                               signatures_at_connect=ident.signatures)
        sections: dict[str, Any] = {}
        for name, (owner, report) in sorted(self.app.contributions.status.items()):
            try:
                sections[name] = dict(report())
            except Exception:  # a plugin's broken section must not hide the rest
                log.exception("status section %r of plugin %r failed", name, owner)
                sections[name] = {"error": "status report failed (see the log)"}
        return {
            "version": st.release_version,
            "identity": enclave.get("public_key"),
            "enclave": enclave,
            "signatures": {"enclave_reported": enclave.get("signatures"),
                           "host_returned_since_start": self.known.signatures_returned},
            "serving": st.serving,
            "not_serving_reason": st.not_serving_reason(),
            "halted": st.halted,
            "halt_reasons": st.halt_reasons,
            "draining": st.draining,
            "sections": sections,
            "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version}
                        for p in self.app.plugins],
            "layers": {kind: [name for name, _ in items] for kind, items in self.app.layers.items() if items},
            "known_traders": len(self.known),
        }

    async def operations(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        return {"operations": self.table.describe()}

    async def trader(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        sub = subject_value(params, "sub")
        policy: dict[str, Any] = {}
        for owner, p in self.table.policies:
            try:
                policy[owner] = dict(p.describe_subject(sub))
            except Exception:
                log.exception("subject policy of plugin %r failed", owner)
                policy[owner] = {"error": "policy view failed (see the log)"}
        return {"sub": sub, "known": self.table.is_known(sub), "seen": sub in self.known, "policy": policy}

    async def drain(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        self.app.state.set_draining(True)
        return {"draining": True, "serving": self.app.state.serving}

    async def undrain(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        self.app.state.set_draining(False)
        return {"draining": False, "serving": self.app.state.serving}
