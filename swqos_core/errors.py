"""The two ways swqos says no: a :class:`Rejection` for a request, a :class:`ConfigError` at startup."""

from __future__ import annotations

import grpc


class Rejection(Exception):
    """A layer refused a request.

    The layer that refuses owns the refusal: it picks the gRPC status and a short reason.
    The pipeline fills in ``stage``. ``reason`` is sent to the caller, so it must never
    contain a secret (a token, a key, a hash of either).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        *,
        stage: str | None = None,
        retry_after: float | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.stage = stage
        #: Seconds the caller should wait before retrying (sent as trailing metadata ``retry-after``).
        self.retry_after = retry_after
        #: A bounded, low-cardinality name for metrics (e.g. ``"step5_signature"``); defaults to the reason.
        self.label = label or reason

    def __repr__(self) -> str:
        return f"Rejection({self.code.name}, {self.reason!r}, stage={self.stage!r})"


def invalid_argument(reason: str, **kw: object) -> Rejection:
    return Rejection(grpc.StatusCode.INVALID_ARGUMENT, reason, **kw)  # type: ignore[arg-type]


def unauthenticated(reason: str, **kw: object) -> Rejection:
    return Rejection(grpc.StatusCode.UNAUTHENTICATED, reason, **kw)  # type: ignore[arg-type]


def permission_denied(reason: str, **kw: object) -> Rejection:
    return Rejection(grpc.StatusCode.PERMISSION_DENIED, reason, **kw)  # type: ignore[arg-type]


def resource_exhausted(reason: str, *, retry_after: float | None = None, **kw: object) -> Rejection:
    return Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED, reason, retry_after=retry_after, **kw)  # type: ignore[arg-type]


def unavailable(reason: str, **kw: object) -> Rejection:
    return Rejection(grpc.StatusCode.UNAVAILABLE, reason, **kw)  # type: ignore[arg-type]


class ConfigError(Exception):
    """Startup cannot proceed. Carries every problem found, so the operator fixes them in one pass."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        if len(self.problems) == 1:
            return f"configuration error: {self.problems[0]}"
        lines = [f"configuration error ({len(self.problems)} problems):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)
