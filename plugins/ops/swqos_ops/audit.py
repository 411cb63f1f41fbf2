"""The audit log: one JSON line per signing decision and one per admin action.

Written to ``[layers.service.audit] path`` (created 0600, appended to, reopened when logrotate
moves it). Never contains a token, a key or a hash of either: a decision line carries the SHA-256
of the *payload* (a CertificateVerify input, not a secret) so an operator can match it with the
enclave's signature count and with a trader's own records.

Writing never blocks the event loop on the disk: the loop serialises the line and hands it to a
stdlib :class:`logging.handlers.QueueHandler` on a bounded queue (a few microseconds); a
:class:`logging.handlers.QueueListener` thread writes it through a
:class:`logging.handlers.WatchedFileHandler`, which notices rotation on every write. If the disk
stalls long enough to fill the queue, further lines are dropped and counted
(``swqos_audit_dropped_total``), with an error logged, rather than stalling signing.

Admin actions also go to the process log (logger ``swqos.audit``), so they are kept even when the
audit service is not selected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import logging.handlers
import os
import queue
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from swqos_core.errors import ConfigError
from swqos_core.extensions import Decision, MetricFamily, Sample
from swqos_ops.settings import AuditSettings

log = logging.getLogger("swqos.audit")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decision_record(d: Decision) -> dict[str, Any]:
    """The audit line of one SignCertificateVerify / GetIdentity decision."""
    return {
        "type": "decision",
        "time": _now(),
        "request_id": d.request_id,
        "rpc": d.rpc,
        "sub": d.subject,
        "client": d.client,
        "payload_len": d.payload_len,
        "payload_sha256": d.payload_sha256,
        "outcome": d.outcome,
        "stage": d.stage,
        "label": d.label,
        "reason": d.reason,
        "latency_ms": round(d.latency * 1000, 3),
    }


def admin_record(*, operation: str, outcome: str, actor: str | None, client: str | None,
                 request_id: str, params: dict[str, Any] | None = None, detail: str | None = None,
                 status: int | None = None, peer: dict[str, int] | None = None) -> dict[str, Any]:
    """The audit line of one admin API request (accepted, failed or refused)."""
    record = {
        "type": "admin",
        "time": _now(),
        "request_id": request_id,
        "operation": operation,
        "actor": actor,
        "client": client,
        "params": params or {},
        "outcome": outcome,
        "status": status,
        "detail": detail,
    }
    if peer:
        record["peer"] = peer
    return record


class _PrivateFileHandler(logging.handlers.WatchedFileHandler):
    """WatchedFileHandler whose file, and every file it reopens after rotation, is 0600 (the log
    names traders and addresses). Writes the pre-serialised line as is."""

    def __init__(self, path: Path, owner: AuditLog) -> None:
        self._owner = owner
        super().__init__(path, mode="a", encoding="utf-8")

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise OSError(f"{self.baseFilename} is not a regular file")
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        return open(fd, self.mode, encoding=self.encoding)

    def format(self, record: logging.LogRecord) -> str:
        return record.msg  # type: ignore[return-value]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reopenIfNeeded()  # outside logging's own try: a failed reopen must not kill the thread
        except OSError:
            self.handleError(record)
            return
        before = self._owner.write_errors
        logging.FileHandler.emit(self, record)
        if self._owner.write_errors == before:
            self._owner.lines_written += 1

    def handleError(self, record: logging.LogRecord) -> None:
        self._owner.write_errors += 1
        self._owner.dropped += 1
        log.error("audit log write failed (line lost): %s", self.baseFilename, exc_info=False)


class _BoundedQueueHandler(logging.handlers.QueueHandler):
    """Never blocks: a full queue drops the line and counts it."""

    def __init__(self, q: queue.Queue[Any], owner: AuditLog) -> None:
        super().__init__(q)
        self._owner = owner

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # already a finished JSON line: nothing to format on the loop

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            o = self._owner
            o.dropped += 1
            if o.dropped & (o.dropped - 1) == 0:  # log at powers of two, not per line
                log.error("audit queue full: %d lines dropped so far (is %s writable and fast?)", o.dropped, o.path)


class AuditLog:
    """Append-only JSON lines, written by one QueueListener thread. ``path=None`` keeps only the
    admin lines, in the process log."""

    def __init__(self, path: Path | None, *, max_queue: int = 100_000, close_timeout: float = 5.0) -> None:
        self.path = path
        self.lines_written = 0
        self.dropped = 0
        self.write_errors = 0
        self.close_timeout = close_timeout
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._producer = _BoundedQueueHandler(self._queue, self)
        self._file: _PrivateFileHandler | None = None
        self._listener: logging.handlers.QueueListener | None = None

    @property
    def enabled(self) -> bool:
        return self.path is not None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Open the file (a startup error if impossible) and start the writer thread."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _PrivateFileHandler(self.path, self)
        self._listener = logging.handlers.QueueListener(self._queue, self._file)
        self._listener.start()

    def close(self) -> None:
        """Write what is queued (for at most ``close_timeout``), then stop. Blocking: run it in a thread."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                # QueueListener.stop() puts its sentinel without waiting: on a full queue it would
                # raise and leave the thread running. Wait for room, bounded.
                self._queue.put(listener._sentinel, timeout=self.close_timeout)  # type: ignore[attr-defined]
            except queue.Full:
                log.error("audit log: writer did not drain within %.1f s at shutdown", self.close_timeout)
            thread = listener._thread  # type: ignore[attr-defined]
            if thread is not None:
                thread.join(self.close_timeout)
            listener._thread = None  # type: ignore[attr-defined]
        if self._file is not None:
            self._file.close()
            self._file = None

    # --- producers (event loop) ---------------------------------------------------------------
    def decision(self, d: Decision) -> None:
        """A decision observer: one line per decision."""
        if self.path is not None:
            self._put(decision_record(d))

    def admin(self, **kw: Any) -> dict[str, Any]:
        record = admin_record(**kw)
        log.info("admin %s %s by %s from %s", record["operation"], record["outcome"], record["actor"] or "-",
                 record["client"] or "-", extra={"request_id": record["request_id"],
                                                 "fields": {"audit": record}})
        if self.path is not None:
            self._put(record)
        return record

    def _put(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        self._producer.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))


AUDIT_FAMILIES = (
    MetricFamily("swqos_audit_enabled", "gauge", "1 when decisions are written to an audit file."),
    MetricFamily("swqos_audit_lines", "counter", "Audit lines written."),
    MetricFamily("swqos_audit_dropped", "counter", "Audit lines lost (queue full or write error)."),
    MetricFamily("swqos_audit_write_errors", "counter", "Failed audit writes or reopens."),
    MetricFamily("swqos_audit_queue", "gauge", "Audit lines waiting for the writer thread."),
    MetricFamily("swqos_audit_queue_limit", "gauge", "Bound of the audit queue (max_queue)."),
)


class AuditMetrics:
    """The audit log's MetricsCollector."""

    families = AUDIT_FAMILIES

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def collect(self) -> Iterable[Sample]:
        a = self.audit
        yield ("swqos_audit_enabled", (), 1.0 if a.enabled else 0.0)
        yield ("swqos_audit_lines", (), float(a.lines_written))
        yield ("swqos_audit_dropped", (), float(a.dropped))
        yield ("swqos_audit_write_errors", (), float(a.write_errors))
        yield ("swqos_audit_queue", (), float(a._queue.qsize()))
        yield ("swqos_audit_queue_limit", (), float(a._queue.maxsize))


class AuditService:
    """The ``audit`` service: opens the file at start, closes it (after draining) at stop."""

    def __init__(self, settings: AuditSettings) -> None:
        self.settings = settings
        self.log = AuditLog(settings.path, max_queue=settings.max_queue,
                            close_timeout=settings.close_timeout_seconds)

    async def start(self, app: Any) -> None:
        try:
            self.log.start()
        except OSError as exc:
            raise ConfigError(f"[layers.service.audit] path: cannot open {self.settings.path}: {exc}") from None

    async def close(self) -> None:
        await asyncio.to_thread(self.log.close)
