"""Typed exceptions for every way a signing call can fail.

Each refusal from the proxy becomes one subclass of :class:`SwqosError` keyed by its gRPC status,
carrying the server's short reason (``reason``) and, for rate limits, the server's ``retry_after``
hint. Failures that happen before any network call (a payload that is not a CertificateVerify)
are :class:`LocalRefusal`.
"""

from __future__ import annotations

import grpc


class SwqosError(Exception):
    """Base class of every error raised by the SDK."""

    code: grpc.StatusCode | None = None

    def __init__(
        self,
        reason: str,
        *,
        code: grpc.StatusCode | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code
        #: The server's retry hint in seconds (trailing metadata ``retry-after``), if any.
        self.retry_after = retry_after
        #: How many RPC attempts were made before giving up (retries included).
        self.attempts = attempts

    def __str__(self) -> str:
        return f"{self.code.name}: {self.reason}" if self.code is not None else self.reason


class LocalRefusal(SwqosError, ValueError):
    """The SDK refused to send the request at all (for example: not a TLS 1.3 client CertificateVerify)."""


class InvalidArgument(SwqosError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(SwqosError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(SwqosError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(SwqosError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(SwqosError):
    code = grpc.StatusCode.UNAVAILABLE


class ProxyUnreachable(Unavailable):
    """No connection to the proxy could be made (refused, no route, TLS failure, DNS)."""


class DeadlineExceeded(SwqosError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnexpectedStatus(SwqosError):
    """Any status the API does not document (UNKNOWN, INTERNAL, ...)."""


class BadResponse(SwqosError):
    """The server answered OK but the answer is wrong (bad length, signature does not verify, wrong key)."""


class TokenError(SwqosError):
    """No usable bearer token (none configured, or the refresh callback failed)."""


_BY_CODE: dict[grpc.StatusCode, type[SwqosError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}

#: Phrases grpc-core uses when it never reached a server; a server-sent UNAVAILABLE (halted proxy,
#: enclave down) carries the proxy's own reason instead.
_TRANSPORT_PHRASES = (
    "failed to connect",
    "connection refused",
    "connections to all backends failing",
    "dns resolution failed",
    "name resolution",
    "ssl_error",
    "handshake failed",
    "socket closed",
    "connection reset",
    "no route to host",
    "network is unreachable",
    "empty address list",
)


def parse_retry_after(trailing: object) -> float | None:
    """Read the ``retry-after`` trailing metadata value (decimal seconds); None when absent or malformed."""
    if not trailing:
        return None
    try:
        items = list(trailing)  # type: ignore[call-overload]
    except TypeError:
        return None
    for item in items:
        key, value = (item.key, item.value) if hasattr(item, "key") else item
        if str(key).lower() == "retry-after":
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace")
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                return None
            # A negative, infinite or NaN hint is noise: ignore it rather than sleep forever.
            if not (0.0 <= seconds < 86400.0):
                return None
            return seconds
    return None


def error_from_status(
    code: grpc.StatusCode,
    details: str | None,
    trailing: object = None,
    *,
    target: str = "",
    attempts: int = 1,
) -> SwqosError:
    """Map a gRPC status to the typed exception carrying the server's reason."""
    reason = details or code.name.lower()
    retry_after = parse_retry_after(trailing)
    if code == grpc.StatusCode.UNAVAILABLE and _looks_like_transport_failure(reason):
        where = f" at {target}" if target else ""
        return ProxyUnreachable(
            f"swqos proxy{where} unreachable: {reason}", code=code, retry_after=retry_after, attempts=attempts
        )
    cls = _BY_CODE.get(code, UnexpectedStatus)
    return cls(reason, code=code, retry_after=retry_after, attempts=attempts)


def _looks_like_transport_failure(details: str) -> bool:
    low = details.lower()
    return any(p in low for p in _TRANSPORT_PHRASES)


#: Statuses that are safe to retry: the proxy refused before doing the work, or could not be reached.
#: Signing is deterministic (Ed25519), so even a lost reply after a signature costs nothing but quota.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
