"""Helpers of the dashboard tests: decisions, a settable clock, a revocation policy with its
operations, a fake enclave view, and an operations host that runs operations the way the admin
listener does, recording audit lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swqos_core.extensions import Actor, AdminError, AdminOperation, Decision

OPERATOR = Actor("certificate", "operator-1")


def decision(outcome: str = "OK", *, subject: str | None = "trader-1", stage: str | None = None,
             label: str | None = None, latency: float = 0.002, rpc: str = "SignCertificateVerify") -> Decision:
    return Decision(rpc=rpc, request_id="r", outcome=outcome, stage=stage, label=label,
                    reason=None if outcome == "OK" else f"refused at {stage}", subject=subject,
                    client="ipv4:192.0.2.1:5000", payload_len=10, latency=latency, payload=b"0123456789")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Revocations:
    """A SubjectPolicy plus revoke/restore operations over one set, like auth_jwt's."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()

    def knows_subject(self, sub: str) -> bool:
        return sub in self.revoked

    def describe_subject(self, sub: str) -> Mapping[str, Any]:
        return {"revoked": sub in self.revoked, "allowlist": None}

    async def revoke(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        self.revoked.add(params["sub"])
        return {"sub": params["sub"], "revoked": True}

    async def restore(self, params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        if params["sub"] not in self.revoked:
            raise AdminError(409, f"trader {params['sub']!r} is not revoked")
        self.revoked.discard(params["sub"])
        return {"sub": params["sub"], "revoked": False}


class FakeEnclave:
    """An EnclaveView whose counter the test sets."""

    address = "unix:///tmp/enclave.sock"
    round_trips = 0
    round_trip_seconds = 0.0
    max_inflight = 64
    busy_refusals = 0
    inflight = 0

    def __init__(self, signatures: int) -> None:
        self.enclave_signatures: int | None = signatures

    async def identity(self, nonce: bytes, trace_id: int = 0):
        return (b"\x01" * 32, self.enclave_signatures, None, b"")


class RecordingHost:
    """Runs operations like the admin listener (handler, AdminError → status) and records audit lines."""

    def __init__(self, operations: Mapping[str, tuple[str, AdminOperation]]) -> None:
        self.operations = operations
        self.calls: list[tuple[str, dict[str, Any], Actor]] = []
        self.audit_lines: list[dict[str, Any]] = []

    async def invoke(self, name: str, params: Mapping[str, Any], actor: Actor):
        self.calls.append((name, dict(params), actor))
        op = self.operations[name][1]
        try:
            result = await op.handler(params, actor)
        except AdminError as exc:
            self.audit(name, "error", actor, exc.message, exc.status)
            return exc.status, {"error": exc.message}
        self.audit(name, "ok", actor, None, 200)
        return 200, {"ok": True, **result}

    def audit(self, operation: str, outcome: str, actor: Actor | None, detail: str | None, status: int) -> None:
        self.audit_lines.append({"operation": operation, "outcome": outcome, "actor": str(actor),
                                 "detail": detail, "status": status})


