"""Structured logs: one JSON object per line in production, readable text in development.

Both processes log the same request id for one call: the host-proxy's ``RequestHead.request_id``
(16 hex digits) travels to the enclave as the frame's ``trace_id`` and is printed there with
``%016x``, so ``request_id`` is the same string on both sides and joins the proxy's log, the
enclave's log and the audit log.

The id reaches a log record in one of two ways: ``extra={"request_id": ...}`` on the call, or
:data:`request_id` (a context variable the gRPC handler sets for the task serving the call).
Named fields beyond the standard ones go in ``extra={"fields": {...}}``; they are emitted as
top-level JSON keys and must never hold a secret.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import sys
from typing import Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
#: Environment variable read when no ``--log-format`` is given (inherited by the enclave child).
ENV_VAR = "SWQOS_LOG_FORMAT"

#: The request id of the call the current task is serving ("" outside a call).
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("swqos_request_id", default="")

#: Keys a record may not override: they are ours.
_RESERVED = frozenset({"time", "level", "logger", "msg", "request_id", "exc", "process"})


def set_request_id(value: str) -> None:
    request_id.set(value)


def _record_request_id(record: logging.LogRecord) -> str:
    rid = getattr(record, "request_id", None)
    if isinstance(rid, str) and rid:
        return rid
    return request_id.get()


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "msg", "request_id"?, "exc"?, ...fields}`` on one line."""

    def __init__(self, process: str | None = None) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.process:
            out["process"] = self.process
        rid = _record_request_id(record)
        if rid:
            out["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if isinstance(key, str) and key not in _RESERVED:
                    out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The development format, with ``[req <id>]`` appended when a request id is known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = _record_request_id(record)
        return f"{line} [req {rid}]" if rid else line


def resolve_format(value: str | None) -> LogFormat:
    """The explicit value, else ``$SWQOS_LOG_FORMAT``, else text. Raises ValueError if unknown."""
    chosen = value or os.environ.get(ENV_VAR) or "text"
    if chosen not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {chosen!r}")
    return chosen  # type: ignore[return-value]


def setup(fmt: str | None = None, *, verbose: bool = False, process: str | None = None,
          stream: Any = None) -> LogFormat:
    """Configure the root logger once for a process: one stderr handler in the chosen format."""
    chosen = resolve_format(fmt)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(process) if chosen == "json" else TextFormatter())
    handler._swqos = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_swqos", False):  # replace only our own handler (test runners add theirs)
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The enclave child inherits the choice, so both processes write the same format.
    os.environ[ENV_VAR] = chosen
    return chosen


__all__ = ["ENV_VAR", "FORMATS", "JsonFormatter", "TextFormatter", "request_id", "resolve_format",
           "set_request_id", "setup"]
