"""The order of the defense layers, in one table.

A SignCertificateVerify call goes through the stages of :data:`STAGES`, top to bottom; the first
that refuses ends the call and owns the refusal (its status, its reason, its metric label).
GetIdentity runs the same table up to and including ``auth`` (any role may read the identity),
then asks the enclave for the identity instead of a signature.

An exception that is not a :class:`Rejection` is a fault of that stage: it is logged and
becomes a refusal with the stage's own ``fault`` status (fail closed), never a pass.

The server derives from the same table which layer kinds start first and stop last
(:func:`layer_start_order`), and the metrics derive the stage names they accept.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError

from swqos_core.enclave.client import EnclaveClient
from swqos_core.errors import Rejection, invalid_argument, permission_denied, resource_exhausted, unauthenticated, unavailable
from swqos_core.extensions import NO_TIMINGS, Decision, DecisionObserver
from swqos_core.layers import Authenticator, Call, ClientAddress, ClientIpResolver, RateLimiter, RequestValidator
from swqos_core.net import parse_peer
from swqos_core.state import ServiceState
from swqos_proto import signer_pb2

log = logging.getLogger("swqos.pipeline")

StageFn = Callable[["Pipeline", Call], Awaitable[None]]
SyncStageFn = Callable[["Pipeline", Call], None]

#: The table's async ``run`` of a stage that never waits -> the plain function behind it. The
#: pipeline calls that function directly (no coroutine per stage); a ``run`` replaced in a copy of
#: the table (tests wrap them) is not in here and is awaited as any other.
_SYNC: dict[StageFn, SyncStageFn] = {}


def _never_waits(fn: SyncStageFn) -> StageFn:
    """Give a synchronous stage the table's async signature, and remember the fast path."""

    @functools.wraps(fn)
    async def run(p: Pipeline, call: Call) -> None:
        fn(p, call)

    _SYNC[run] = fn
    return run


@functools.lru_cache(maxsize=4096)
def _field1_header(length: int) -> bytes:
    """Tag of field 1 as length-delimited (0x0a), then ``length`` as a minimal varint."""
    out = bytearray(b"\x0a")
    while length >= 0x80:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out)


def _is_canonical(raw: bytes, value: bytes) -> bool:
    """Is ``raw`` the one canonical encoding of a message whose only field (1, bytes) is ``value``?

    proto3 writes a non-empty bytes field as its tag, a minimal varint length and the bytes, and
    an empty one not at all; so the canonical body is exactly that, and a body that parsed to
    ``value`` is canonical if and only if it is one such record spanning the whole body (a
    repeated field, an unknown field, a wrong wire type, an overlong tag or length, an explicit
    empty field all fail). No re-encode needed; the tests list each form.
    """
    if not value:
        return not raw
    header = _field1_header(len(value))
    return len(raw) == len(header) + len(value) and raw.startswith(header)


def _require_single_bytes_field(message_type: type) -> None:
    """The rule above holds only for a message of one bytes field numbered 1: refuse to start otherwise."""
    fields = message_type.DESCRIPTOR.fields  # type: ignore[attr-defined]
    if len(fields) != 1 or fields[0].number != 1 or fields[0].type != fields[0].TYPE_BYTES:
        raise RuntimeError(f"{message_type.__name__} changed shape: the strict decode's canonical check needs updating")


_require_single_bytes_field(signer_pb2.SignCertificateVerifyRequest)
_require_single_bytes_field(signer_pb2.GetIdentityRequest)


@dataclass(frozen=True, slots=True)
class Stage:
    """One row of the table: the stage's name, the status its faults become, the layer kind it calls."""

    name: str
    fault: grpc.StatusCode
    #: The layer kind whose objects this stage calls (None: the kernel decides alone).
    layer: str | None
    run: StageFn


# --- the stages, in the order of the table below ---------------------------------------------
@_never_waits
def _decode(p: Pipeline, call: Call) -> None:
    """Body ≤ max_request_bytes, then a strict protobuf decode: only the canonical encoding passes."""
    raw = call.raw
    if len(raw) > p.max_request_bytes:
        raise resource_exhausted(f"request is {len(raw)} bytes, the limit is {p.max_request_bytes}", label="too_large")
    sign = call.head.rpc == "SignCertificateVerify"
    message_type = signer_pb2.SignCertificateVerifyRequest if sign else signer_pb2.GetIdentityRequest
    try:
        message = message_type.FromString(raw)
    except DecodeError:
        raise invalid_argument("malformed request", label="malformed") from None
    value = message.payload if sign else message.nonce
    if not _is_canonical(raw, value):  # unknown fields, wrong wire types, repeated fields, overlong varints
        raise invalid_argument("malformed request: unexpected fields", label="malformed")
    if sign:
        call.payload = value
    else:
        if len(value) > 64:
            raise invalid_argument("nonce longer than 64 bytes", label="nonce")
        call.nonce = value


@_never_waits
def _admission(p: Pipeline, call: Call) -> None:
    if p.state.halted:
        raise unavailable("signing is halted by the operator's kill switch", label="halted")
    if p.state.draining:
        raise unavailable("this proxy is draining; retry another", label="draining")


async def _client_ip(p: Pipeline, call: Call) -> None:
    for resolver in p.client_ip:
        client = await resolver.resolve(call.head)
        if client is not None:
            call.client = client
            return
    call.client = ClientAddress(parse_peer(call.head.peer), "peer", call.head.peer)


async def _address_limit(p: Pipeline, call: Call) -> None:
    assert call.client is not None
    for limiter in p.rate_limit:
        await limiter.check_address(call.head, call.client)


async def _auth(p: Pipeline, call: Call) -> None:
    assert call.client is not None
    for authenticator in p.auth:
        principal = await authenticator.authenticate(call.head, call.client)
        if principal is not None:
            call.principal = principal
            return
    raise unauthenticated("missing credential: send 'authorization: Bearer <token>'", label="no_credential")


@_never_waits
def _authorize(p: Pipeline, call: Call) -> None:
    assert call.principal is not None
    if call.principal.role != "trader":
        raise permission_denied(f"role {call.principal.role!r} may not sign", label="role")


async def _subject_limit(p: Pipeline, call: Call) -> None:
    assert call.principal is not None and call.client is not None
    for limiter in p.rate_limit:
        await limiter.check_principal(call.head, call.principal, call.client)


async def _validate(p: Pipeline, call: Call) -> None:
    for validator in p.validate:
        await validator.validate(call)


async def _enclave(p: Pipeline, call: Call) -> None:
    call.signature = await p.enclave.sign(call.payload, _trace(call))


#: The stage order. Everything else (identity's prefix, start and stop order, metric stage
#: names, the docs' diagram, checked by a test) derives from this table.
STAGES: tuple[Stage, ...] = (
    Stage("decode", grpc.StatusCode.INVALID_ARGUMENT, None, _decode),
    Stage("admission", grpc.StatusCode.UNAVAILABLE, None, _admission),
    Stage("client_ip", grpc.StatusCode.PERMISSION_DENIED, "client_ip", _client_ip),
    Stage("address_limit", grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limit", _address_limit),
    Stage("auth", grpc.StatusCode.UNAUTHENTICATED, "auth", _auth),
    Stage("authorize", grpc.StatusCode.PERMISSION_DENIED, None, _authorize),
    Stage("subject_limit", grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limit", _subject_limit),
    Stage("validate", grpc.StatusCode.INVALID_ARGUMENT, "validate", _validate),
    Stage("enclave", grpc.StatusCode.UNAVAILABLE, None, _enclave),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
#: GetIdentity: the gate up to authentication, whatever the role.
IDENTITY_PREFIX: int = STAGE_NAMES.index("auth") + 1
#: What the enclave checks after the host let a call through (its own refusal labels).
ENCLAVE_STAGES = ("payload_match", "sign")
#: Layer kinds that run in the background rather than in a stage, started before any stage's.
BACKGROUND_KINDS = ("store", "revocation", "service")


def layer_start_order() -> tuple[str, ...]:
    """Host-proxy layer kinds in the order they start: background first, then by first stage use.

    The kill switch starts first so a persisted halt applies before the first request; layers
    close in the reverse order.
    """
    kinds: list[str] = list(BACKGROUND_KINDS)
    for stage in STAGES:
        if stage.layer is not None and stage.layer not in kinds:
            kinds.append(stage.layer)
    return tuple(kinds)


@dataclass
class Pipeline:
    """The host-proxy's layers, ready for the stages. Built once at startup by the server."""

    client_ip: tuple[ClientIpResolver, ...]
    rate_limit: tuple[RateLimiter, ...]
    auth: tuple[Authenticator, ...]
    validate: tuple[RequestValidator, ...]
    enclave: EnclaveClient
    state: ServiceState
    max_request_bytes: int = 1024
    #: Called with every Decision (audit log, metrics). Exceptions are logged and ignored.
    observers: list[DecisionObserver] = field(default_factory=list)
    stages: tuple[Stage, ...] = STAGES
    #: Per-stage times go into one call's Decision in this many (``[proxy] stage_timing_every``;
    #: 0: never): a histogram needs a sample, not every call, and timing costs every call it times.
    stage_timing_every: int = 16
    _until_timed: int = field(default=0, init=False, repr=False)

    async def sign(self, call: Call) -> bytes:
        """Run every stage for SignCertificateVerify; return the signature or raise Rejection."""
        await self._run(call, self.stages)
        assert call.signature is not None
        return call.signature

    async def identity(self, call: Call) -> tuple[bytes, bytes]:
        """GetIdentity: the table's prefix up to ``auth``, then the enclave's identity."""
        await self._run(call, self.stages[:IDENTITY_PREFIX], identity=True)
        assert call.identity is not None
        return call.identity

    def _timings(self) -> dict[str, float] | None:
        """A dict to time this call's stages in, for one call in ``stage_timing_every`` that has observers."""
        if not self.observers or not self.stage_timing_every:
            return None
        if self._until_timed:
            self._until_timed -= 1
            return None
        self._until_timed = self.stage_timing_every - 1
        return {}

    async def _run(self, call: Call, stages: tuple[Stage, ...], *, identity: bool = False) -> None:
        timings = self._timings()
        name = stages[0].name
        t = time.perf_counter()
        try:
            for stage in stages:
                name = stage.name
                fast = _SYNC.get(stage.run)
                if fast is not None:
                    fast(self, call)
                else:
                    await stage.run(self, call)
                if timings is not None:
                    now = time.perf_counter()
                    timings[name], t = now - t, now
            if identity:
                name = "enclave"
                public_key, _, _, document = await self.enclave.identity(call.nonce, _trace(call))
                call.identity = (public_key, document)
        except Rejection as exc:
            if timings is not None:  # the refusing stage is timed too
                timings.setdefault(name, time.perf_counter() - t)
            exc.stage = exc.stage or name
            self.decide(call, exc, timings)
            raise
        except Exception as exc:
            if timings is not None:
                timings.setdefault(name, time.perf_counter() - t)
            rejection = self._fault(name, exc)
            self.decide(call, rejection, timings)
            raise rejection from None
        self.decide(call, None, timings)

    # --- bookkeeping -----------------------------------------------------------------------
    def _fault(self, stage: str, exc: BaseException) -> Rejection:
        log.error("stage %s failed unexpectedly; refusing the request", stage, exc_info=exc)
        fault = next((s.fault for s in STAGES if s.name == stage), grpc.StatusCode.UNAVAILABLE)
        return Rejection(fault, f"refused: internal fault in {stage}", stage=stage, label="fault")

    def decide(self, call: Call, rejection: Rejection | None, timings: dict[str, float] | None = None) -> None:
        """Hand the call's outcome to every observer; builds nothing when there are none."""
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
            payload=call.payload,
            latency=time.monotonic() - call.started,
            stage_seconds=timings or NO_TIMINGS,
        )
        for observer in self.observers:
            try:
                observer(decision)
            except Exception:  # an observer must never turn a decision around
                log.exception("decision observer failed")


def _trace(call: Call) -> int:
    try:
        return int(call.head.request_id, 16) & 0xFFFFFFFFFFFFFFFF
    except ValueError:
        return 0
