"""What plugins contribute besides layers: decision observers, metrics, admin operations, status.

Each is registered through a hook in :mod:`swqos_core.hookspecs` that runs once at host-proxy
startup, after every layer is built, so a plugin can hand over objects that read its own layers.
The kernel collects them (two owners of one name is a startup error naming both), and the
plugins that serve them (the operations plugin: audit log, ``/metrics``, the admin API) consume
them from :class:`~swqos_core.plugins.App`. Nothing here is called by duck typing: a
contribution either satisfies its Protocol at registration or startup stops.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

#: A Decision's ``stage_seconds`` when its call's stages were not timed (see ``[proxy] stage_timing_every``).
NO_TIMINGS: Mapping[str, float] = types.MappingProxyType({})


class Decision(NamedTuple):
    """The outcome of one call: one line of the audit log, the input of every request metric.

    Built lazily by the pipeline, only when at least one observer is registered, and shared by
    every observer, so it is immutable. A NamedTuple rather than a frozen dataclass: it is built
    once per request on the event loop, and a tuple costs a third of the frozen dataclass's
    per-field ``object.__setattr__``.
    """

    rpc: str
    request_id: str
    outcome: str  # "OK" or the gRPC status name
    stage: str | None  # the stage that refused, None when signed
    label: str | None  # bounded reason label for metrics
    reason: str | None
    subject: str | None
    client: str | None
    payload_len: int
    latency: float  # seconds
    #: Seconds per stage reached, for one call in ``[proxy] stage_timing_every``; empty for the others.
    stage_seconds: Mapping[str, float] = NO_TIMINGS
    #: The payload as received; observers that log it use :attr:`payload_sha256`, never the bytes.
    payload: bytes = b""

    @property
    def payload_sha256(self) -> str | None:
        """Hex SHA-256 of the payload, computed only by an observer that asks (the audit log)."""
        return hashlib.sha256(self.payload).hexdigest() if self.payload else None

    def __repr__(self) -> str:  # the payload's bytes stay out of logs and test output
        return (f"Decision(rpc={self.rpc!r}, request_id={self.request_id!r}, outcome={self.outcome!r}, "
                f"stage={self.stage!r}, label={self.label!r}, payload_len={self.payload_len})")


#: Called on the event loop with every Decision; must return quickly (hand slow work to a thread).
DecisionObserver = Callable[[Decision], None]

MetricKind = Literal["counter", "gauge"]


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """A metric a plugin owns: its full name (``swqos_<plugin>_...``), kind, help and label names."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()


#: One sample: (family name, label values in the family's label order, value).
Sample = tuple[str, tuple[str, ...], float]


@runtime_checkable
class MetricsCollector(Protocol):
    """State metrics read when ``/metrics`` is scraped, on the event loop (layers are not thread-safe)."""

    @property
    def families(self) -> tuple[MetricFamily, ...]:
        """Every family this collector may emit; names are checked for collisions at startup."""
        ...

    def collect(self) -> Iterable[Sample]:
        """Current samples; a sample whose family is not in :attr:`families` is dropped and counted."""
        ...


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated operator behind an admin request, as the audit log names it (never the credential)."""

    method: str  # "token", "certificate" or "socket"
    name: str
    token_id: str | None = None
    #: Peer credentials of a Unix-socket caller (SO_PEERCRED), when known.
    uid: int | None = None
    pid: int | None = None

    def __str__(self) -> str:
        return f"{self.method}:{self.name}" + (f" ({self.token_id})" if self.token_id else "")


class AdminError(Exception):
    """An admin operation refused or failed; ``status`` is the HTTP status, ``message`` is for the operator."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


#: ``handler(params, actor) -> result``: ``params`` is the request's JSON object (already checked to
#: be an object), the result a JSON-serializable mapping. Raise :class:`AdminError` to refuse.
AdminHandler = Callable[[Mapping[str, Any], Actor], Awaitable[Mapping[str, Any]]]


@runtime_checkable
class SubjectPolicy(Protocol):
    """What a plugin holds about one trader (a revocation, an allowlist, a quota override).

    Handed over with the plugin's admin operations: the admin listener asks every policy
    before it lets an operation act on a trader it has never seen, and shows their answers in its
    per-trader view. Read on the event loop; must not block.
    """

    def knows_subject(self, sub: str) -> bool:
        """True when this plugin holds policy for ``sub``."""
        ...

    def describe_subject(self, sub: str) -> Mapping[str, Any]:
        """This plugin's JSON-serializable view of ``sub`` (no secrets)."""
        ...


@dataclass(frozen=True, slots=True)
class AdminOperation:
    """One admin API operation, served as ``POST /v1/<name>`` (``GET`` when it changes nothing)."""

    name: str
    handler: AdminHandler
    description: str
    #: Changes state: audited as a change, needs a CSRF token in the dashboard, refused while read-only.
    mutating: bool = True
    #: Parameter name → one-line description (help text, ``swqos admin``, the dashboard's forms).
    params: Mapping[str, str] = field(default_factory=dict)
    #: The parameter naming the trader the operation acts on. The admin listener then refuses a
    #: trader it has not seen authenticate and no :class:`SubjectPolicy` knows (HTTP 404) unless the
    #: request sets ``force = true``: a mistyped ``sub`` is caught, a trader yet to connect can be forced.
    subject_param: str | None = None
    #: The owning plugin's view of traders, consulted by every subject check (see above).
    policy: SubjectPolicy | None = None


#: ``report() -> section``: a JSON-serializable mapping shown under ``name`` in ``/v1/status``.
StatusReporter = Callable[[], Mapping[str, Any]]


@runtime_checkable
class EnclaveView(Protocol):
    """What plugins may read of the host-proxy's enclave connection (never sign through it)."""

    address: str
    #: The enclave's own signature counter at its last answer (it alone counts them); None until known.
    enclave_signatures: int | None
    round_trips: int
    #: Sum of answered round-trip times, seconds.
    round_trip_seconds: float
    #: The back-pressure bound: requests in flight at once.
    max_inflight: int
    #: Requests refused at once because ``max_enclave_inflight`` were already in flight.
    busy_refusals: int

    @property
    def inflight(self) -> int: ...

    async def identity(self, nonce: bytes, trace_id: int = 0) -> tuple[bytes, int, str | None, bytes]:
        """Ask the enclave now: (public key, signatures so far, PCR0 hex or None, attestation document)."""
        ...
