"""The order of the defense layers, in one place.

A SignCertificateVerify call goes through these stages, top to bottom; the first that
refuses ends the call, and owns the refusal (its status, its reason, its metric label):

    decode         body ≤ max_request_bytes, then a strict protobuf decode  (server.py)
    admission      halted by the kill switch or draining → UNAVAILABLE
    client_ip      which client this is: CDN headers if the peer is a CDN edge, else the peer
    address_limit  per-address limits and bans, before any expensive check (protects the verifier)
    auth           the credential → a Principal (UNAUTHENTICATED / PERMISSION_DENIED)
    authorize      only traders may sign; probes may only read the identity
    subject_limit  per-trader limits, only now that the subject is verified
    validate       body checks: payload present and small, deadline not passed
    enclave        over the socket: payload_match → sign, inside the enclave

An exception that is not a :class:`Rejection` is a fault of that stage: it is logged and
becomes a refusal with the stage's own status (fail closed), never a pass.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from swqos_core.enclave.client import EnclaveClient
from swqos_core.errors import Rejection, permission_denied, unauthenticated, unavailable
from swqos_core.layers import (
    Authenticator,
    Call,
    ClientAddress,
    ClientIpResolver,
    RateLimiter,
    RequestHead,
    RequestValidator,
)
from swqos_core.net import parse_peer
from swqos_core.state import ServiceState

log = logging.getLogger("swqos.pipeline")

STAGES = (
    "decode",
    "admission",
    "client_ip",
    "address_limit",
    "auth",
    "authorize",
    "subject_limit",
    "validate",
    "enclave",
)
ENCLAVE_STAGES = ("payload_match", "sign")

#: The status a stage's unexpected fault turns into: the refusal that stage would have made.
FAULT_STATUS = {
    "decode": grpc.StatusCode.INVALID_ARGUMENT,
    "admission": grpc.StatusCode.UNAVAILABLE,
    "client_ip": grpc.StatusCode.PERMISSION_DENIED,
    "address_limit": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "auth": grpc.StatusCode.UNAUTHENTICATED,
    "authorize": grpc.StatusCode.PERMISSION_DENIED,
    "subject_limit": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "validate": grpc.StatusCode.INVALID_ARGUMENT,
    "enclave": grpc.StatusCode.UNAVAILABLE,
}


@dataclass(frozen=True, slots=True)
class Decision:
    """One line of the audit log, and the input of every metric about requests."""

    rpc: str
    request_id: str
    outcome: str  # "OK" or the gRPC status name
    stage: str | None  # the stage that refused, None when signed
    label: str | None  # bounded reason label for metrics
    reason: str | None
    subject: str | None
    client: str | None
    payload_len: int
    payload_sha256: str | None
    latency: float  # seconds
    stage_seconds: dict[str, float]


@dataclass
class Pipeline:
    """The host-proxy's layers, in stage order. Built once at startup by the server."""

    client_ip: tuple[ClientIpResolver, ...]
    address_limit: tuple[RateLimiter, ...]
    auth: tuple[Authenticator, ...]
    subject_limit: tuple[RateLimiter, ...]
    validate: tuple[RequestValidator, ...]
    enclave: EnclaveClient
    state: ServiceState
    #: Called with every Decision (audit log, metrics). Exceptions are logged and ignored.
    observers: list[Callable[[Decision], None]] = field(default_factory=list)

    async def sign(self, call: Call) -> bytes:
        """Run every stage for SignCertificateVerify; return the signature or raise Rejection."""
        timings: dict[str, float] = {}
        stage = "admission"
        try:
            t = time.perf_counter()
            self._admit()
            timings[stage] = _lap(t)
            stage, t = "client_ip", time.perf_counter()
            call.client = await self._resolve_client(call.head)
            timings[stage] = _lap(t)
            stage, t = "address_limit", time.perf_counter()
            for limiter in self.address_limit:
                await limiter.check_address(call.head, call.client)
            timings[stage] = _lap(t)
            stage, t = "auth", time.perf_counter()
            call.principal = await self._authenticate(call.head, call.client)
            timings[stage] = _lap(t)
            stage = "authorize"
            if call.principal.role != "trader":
                raise permission_denied(f"role {call.principal.role!r} may not sign", label="role")
            stage, t = "subject_limit", time.perf_counter()
            for limiter in self.subject_limit:
                await limiter.check_principal(call.head, call.principal, call.client)
            timings[stage] = _lap(t)
            stage, t = "validate", time.perf_counter()
            for validator in self.validate:
                await validator.validate(call)
            timings[stage] = _lap(t)
            stage, t = "enclave", time.perf_counter()
            signature = await self.enclave.sign(call.payload, _trace(call.head))
            timings[stage] = _lap(t)
        except Rejection as exc:
            timings.setdefault(stage, _lap(t))  # the refusing stage is timed too
            exc.stage = exc.stage or stage
            self.decide(call, exc, timings)
            raise
        except Exception as exc:
            timings.setdefault(stage, _lap(t))
            rejection = self._fault(stage, exc)
            self.decide(call, rejection, timings)
            raise rejection from None
        self.decide(call, None, timings)
        return signature

    async def identity(self, call: Call, nonce: bytes) -> tuple[bytes, bytes]:
        """GetIdentity: the same gate up to authentication (any role), then ask the enclave."""
        timings: dict[str, float] = {}
        stage = "client_ip"
        try:
            call.client = await self._resolve_client(call.head)
            stage = "address_limit"
            for limiter in self.address_limit:
                await limiter.check_address(call.head, call.client)
            stage = "auth"
            call.principal = await self._authenticate(call.head, call.client)
            stage = "enclave"
            public_key, _, _, document = await self.enclave.identity(nonce, _trace(call.head))
        except Rejection as exc:
            exc.stage = exc.stage or stage
            self.decide(call, exc, timings)
            raise
        except Exception as exc:
            rejection = self._fault(stage, exc)
            self.decide(call, rejection, timings)
            raise rejection from None
        self.decide(call, None, timings)
        return public_key, document

    # --- stages ----------------------------------------------------------------------------
    def _admit(self) -> None:
        if self.state.halted:
            raise unavailable("signing is halted by the operator's kill switch", label="halted")
        if self.state.draining:
            raise unavailable("this proxy is draining; retry another", label="draining")

    async def _resolve_client(self, head: RequestHead) -> ClientAddress:
        for resolver in self.client_ip:
            client = await resolver.resolve(head)
            if client is not None:
                return client
        return ClientAddress(parse_peer(head.peer), "peer", head.peer)

    async def _authenticate(self, head: RequestHead, client: ClientAddress):
        for authenticator in self.auth:
            principal = await authenticator.authenticate(head, client)
            if principal is not None:
                return principal
        raise unauthenticated("missing credential: send 'authorization: Bearer <token>'", label="no_credential")

    # --- bookkeeping -----------------------------------------------------------------------
    def _fault(self, stage: str, exc: BaseException) -> Rejection:
        log.error("stage %s failed unexpectedly; refusing the request", stage, exc_info=exc)
        return Rejection(FAULT_STATUS[stage], f"refused: internal fault in {stage}", stage=stage, label="fault")

    def decide(self, call: Call, rejection: Rejection | None, timings: dict[str, float]) -> None:
        if not self.observers:
            return
        decision = Decision(
            rpc=call.head.rpc,
            request_id=call.head.request_id,
            outcome="OK" if rejection is None else rejection.code.name,
            stage=None if rejection is None else rejection.stage,
            label=None if rejection is None else rejection.label,
            reason=None if rejection is None else rejection.reason,
            subject=call.principal.subject if call.principal else None,
            client=str(call.client) if call.client else None,
            payload_len=len(call.payload),
            payload_sha256=hashlib.sha256(call.payload).hexdigest() if call.payload else None,
            latency=time.monotonic() - call.started,
            stage_seconds=timings,
        )
        for observer in self.observers:
            try:
                observer(decision)
            except Exception:
                log.exception("decision observer failed")


def _lap(started: float) -> float:
    return time.perf_counter() - started


def _trace(head: RequestHead) -> int:
    try:
        return int(head.request_id, 16) & 0xFFFFFFFFFFFFFFFF
    except ValueError:
        return 0
