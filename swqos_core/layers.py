"""The typed objects the pipeline calls, one Protocol per defense layer, and the values they pass.

Plugins register *factories* for these objects through the hooks in :mod:`swqos_core.hookspecs`;
the pipeline (:mod:`swqos_core.pipeline`) calls the objects in a fixed order on every request.

A layer object that also satisfies :class:`Startable` or :class:`Closable` is started and
closed once around serving, in the order :func:`swqos_core.pipeline.layer_start_order` derives.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, runtime_checkable

from swqos_core.net import IPAddress, address_key, ip_text
from swqos_core.store import StateStore

if TYPE_CHECKING:
    from swqos_core.plugins import App
    from swqos_core.state import ServiceState

Role = Literal["trader", "probe", "admin"]
RpcName = Literal["SignCertificateVerify", "GetIdentity", "Health"]


#: A call without TLS auth context (tests, a plaintext listener): an empty, read-only mapping.
NO_AUTH_CONTEXT: Mapping[str, Sequence[bytes]] = MappingProxyType({})


# The values a request carries through the stages are immutable NamedTuples: every call builds
# several, and a frozen dataclass costs several times more to build (a setattr per field).
class RequestHead(NamedTuple):
    """What the host-proxy knows about a call before reading its body."""

    rpc: RpcName
    #: gRPC transport peer: ``ipv4:203.0.113.7:50512``, ``ipv6:[2001:db8::1]:443``, ``unix:/run/s``.
    peer: str
    #: Invocation metadata as received (keys lower-case; ``-bin`` keys carry bytes).
    metadata: tuple[tuple[str, str | bytes], ...]
    #: TLS auth context from grpc (``transport_security_type``, ``x509_pem_cert``, ...).
    auth_context: Mapping[str, Sequence[bytes]] = NO_AUTH_CONTEXT
    #: Random id shared by the proxy's and the enclave's log lines for this call.
    request_id: str = ""

    def header_values(self, name: str) -> list[str]:
        """Every text value of metadata key ``name`` (case-insensitive), in order received."""
        name = name.lower()
        return [v for k, v in self.metadata if k == name and isinstance(v, str)]


class ClientAddress(NamedTuple):
    """The address a request is attributed to, after the CDN stage."""

    ip: IPAddress | None
    #: Which resolver decided: ``"peer"`` or the CDN implementation name (``"cloudflare"``).
    source: str
    #: The raw transport peer, kept for logs.
    peer: str

    @property
    def key(self) -> int | str:
        """Bucket for limits and bans: IPv4 /32, IPv6 /64, or one bucket per non-IP transport."""
        return address_key(self.ip, self.peer)

    def __str__(self) -> str:
        return ip_text(self.ip) if self.ip is not None else self.peer


class Principal(NamedTuple):
    """A verified caller. Only an authenticator creates one, and only after checking a credential."""

    subject: str
    role: Role
    authenticator: str
    #: Credential id (JWT ``jti`` or API-token id), for revocation and audit.
    token_id: str | None = None
    #: Unix time the credential stops being valid, if it has one.
    expires_at: float | None = None


@dataclass(slots=True)
class Call:
    """One SignCertificateVerify (or GetIdentity) call as it moves through the pipeline."""

    head: RequestHead
    payload: bytes
    #: ``time.monotonic()`` by which the answer must be sent.
    deadline: float
    #: ``time.monotonic()`` when the call arrived.
    started: float = 0.0
    client: ClientAddress | None = None
    principal: Principal | None = None
    #: The request body as received; the ``decode`` stage fills ``payload`` (or ``nonce``) from it.
    raw: bytes = b""
    nonce: bytes = b""
    #: The answer, once the ``enclave`` stage has it.
    signature: bytes | None = None
    identity: tuple[bytes, bytes] | None = None


@dataclass(slots=True)
class BuildContext:
    """What a layer factory receives besides its own validated config."""

    #: Implementation name as selected in the TOML (``"jwt"``).
    name: str
    #: Layer kind (``"auth"``, ``"key_provider"``, ...).
    kind: str
    #: Which process builds it: ``"proxy"``, ``"enclave"`` or ``"cli"``.
    process: Literal["proxy", "enclave", "cli"]
    #: Directory of the config file: relative paths in a config are resolved against it.
    config_dir: Path
    logger: logging.Logger
    #: The host-proxy's shared state (halt, drain, enclave identity); ``None`` in the enclave.
    state: ServiceState | None = None
    #: The host-proxy's state store (``[pipeline] store``); ``None`` in the enclave and the CLI.
    store: StateStore | None = None
    #: Host-proxy processes serving this config (``[proxy] workers``): state that they share must
    #: be decided across processes, not in one process's memory.
    workers: int = 1

    def path(self, value: str | Path) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.config_dir / p)


# --- host-proxy layers -------------------------------------------------------------------


@runtime_checkable
class ClientIpResolver(Protocol):
    """Layer 2: decide which client address a request comes from (CDN headers)."""

    async def resolve(self, head: RequestHead) -> ClientAddress | None:
        """Return the client address, ``None`` to let the next resolver decide, or raise a
        :class:`~swqos_core.errors.Rejection` (PERMISSION_DENIED when the peer is not the CDN and
        the CDN is required; INVALID_ARGUMENT for a malformed or repeated header)."""
        ...


@runtime_checkable
class Authenticator(Protocol):
    """Layer 4: turn a credential into a :class:`Principal`."""

    async def authenticate(self, head: RequestHead, client: ClientAddress) -> Principal | None:
        """Return a Principal, ``None`` when the request carries no credential of this type, or
        raise a Rejection (UNAUTHENTICATED for a bad credential, PERMISSION_DENIED for a valid
        one that is not allowed from ``client``). A present but invalid credential must raise:
        it never falls through to the next authenticator."""
        ...


@runtime_checkable
class RateLimiter(Protocol):
    """Layer 5: limits. Raise RESOURCE_EXHAUSTED (with ``retry_after``) to refuse."""

    async def check_address(self, head: RequestHead, client: ClientAddress) -> None:
        """Run before authentication: protects the verifier; keyed by client address only."""
        ...

    async def check_principal(self, head: RequestHead, principal: Principal, client: ClientAddress) -> None:
        """Run after authentication: keyed by the verified subject, so nobody drains another's quota."""
        ...


@runtime_checkable
class RequestValidator(Protocol):
    """Layer 6: request checks that need the decoded body (sizes, shapes, deadlines)."""

    async def validate(self, call: Call) -> None:
        """Return to accept; raise a Rejection (usually INVALID_ARGUMENT) to refuse."""
        ...


@runtime_checkable
class RevocationSource(Protocol):
    """Kill switch: watches a signed manifest and halts or resumes the service through
    :class:`~swqos_core.state.ServiceState`. Runs in the background; no per-request method."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class Service(Protocol):
    """A background part of the host-proxy with its own settings (admin listener, audit log).

    ``start`` receives the running :class:`~swqos_core.plugins.App` (layers, state, the enclave
    view and every registered contribution); raise to stop startup. ``close`` releases it.
    """

    async def start(self, app: App) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class Startable(Protocol):
    """A layer with work to do before the first request (load a snapshot, start polling)."""

    async def start(self) -> None: ...


@runtime_checkable
class Closable(Protocol):
    """A layer holding resources to release when the process stops."""

    async def close(self) -> None: ...


# --- enclave layers ------------------------------------------------------------------------


@runtime_checkable
class PayloadMatcher(Protocol):
    """Layer 8: the only judge of what the identity key may sign. Synchronous and pure."""

    def match(self, payload: bytes) -> None:
        """Return to accept; raise a Rejection with INVALID_ARGUMENT and a reason to refuse."""
        ...


@dataclass(slots=True)
class KeyMaterial:
    """An Ed25519 private seed on its way from a key provider to the signer.

    The enclave wipes ``seed`` once the signer has loaded it. Never logged, never sent.
    """

    seed: bytearray
    #: Where it came from, for logs: ``"file:/path"``, ``"kms:arn:..."``.
    origin: str

    def __repr__(self) -> str:
        return f"KeyMaterial(origin={self.origin!r}, seed=<redacted>)"


@runtime_checkable
class KeyProvider(Protocol):
    """Layer 9: produce the identity key at boot, and attest to it on request."""

    def load(self) -> KeyMaterial:
        """Called once at enclave boot. Raise :class:`~swqos_core.errors.ConfigError` to refuse to start."""
        ...

    def attest(self, public_key: bytes, nonce: bytes) -> bytes:
        """Return an attestation document binding ``public_key`` and ``nonce``, or ``b""`` if none."""
        ...

    def measurement(self) -> str | None:
        """Hex measurement of the running enclave image (PCR0), or None outside an enclave."""
        ...


@runtime_checkable
class Signer(Protocol):
    """Layer 10: the signature itself."""

    def load(self, key: KeyMaterial) -> bytes:
        """Take the key (copy what is needed), return the 32-byte Ed25519 public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        ...


#: Each layer kind, the protocol its objects implement, and whether a config selects one or many.
LAYER_KINDS: dict[str, tuple[type, Literal["one", "many"], Literal["proxy", "enclave"]]] = {
    "client_ip": (ClientIpResolver, "many", "proxy"),
    "auth": (Authenticator, "many", "proxy"),
    "rate_limit": (RateLimiter, "many", "proxy"),
    "validate": (RequestValidator, "many", "proxy"),
    "revocation": (RevocationSource, "many", "proxy"),
    "service": (Service, "many", "proxy"),
    "store": (StateStore, "one", "proxy"),
    "payload_match": (PayloadMatcher, "one", "enclave"),
    "key_provider": (KeyProvider, "one", "enclave"),
    "signer": (Signer, "one", "enclave"),
}
