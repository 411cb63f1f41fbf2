"""The audit log: one JSON line per signing decision and one per admin action.

Written to ``[layers.service.audit] path`` (created 0600, appended to, reopened when logrotate
moves it). Never contains a token, a key or a hash of either: a decision line carries the SHA-256
of the *payload* (a CertificateVerify input, not a secret) so an operator can match it with the
enclave's signature count and with a trader's own records.

Writing costs the event loop almost nothing: the loop hands the (immutable) Decision and the
wall-clock time to a stdlib :class:`logging.handlers.QueueHandler`'s bounded queue, and that is all
(no record, no dict, no JSON, no hash on the loop). A :class:`logging.handlers.QueueListener`
thread takes whatever is queued in one go (up to ``BATCH`` items), builds and serialises the lines
(the payload's SHA-256 included) and writes the batch in one call through a
:class:`logging.handlers.WatchedFileHandler`, which notices rotation before every batch. If the
disk stalls long enough to fill the queue, further lines are dropped and counted
(``swqos_audit_dropped_total``), with an error logged, rather than stalling signing.

Admin actions also go to the process log (logger ``swqos.audit``), so they are kept even when the
audit service is not selected.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import logging.handlers
import os
import queue
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from swqos_core.errors import ConfigError
from swqos_core.extensions import Decision, MetricFamily, Sample
from swqos_ops.settings import AuditSettings

log = logging.getLogger("swqos.audit")

#: Most items the writer thread formats and writes in one go.
BATCH = 512
#: Seconds the writer thread rests after each batch. Waking it for every line costs the event
#: loop a thread switch (and a GIL hand-off) per request; resting lets lines gather, so a busy
#: proxy writes about 1/FLUSH_INTERVAL batches a second. A line reaches the file at most this
#: much later than it would have (it is on disk, flushed, when the batch is written).
FLUSH_INTERVAL = 0.05


def _now(when: float | None = None) -> str:
    """``2026-12-06T23:11:45.123Z`` (UTC, milliseconds) for ``when``, or now."""
    when = time.time() if when is None else when
    seconds = int(when)
    return f"{_second(seconds)}.{int((when - seconds) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    """The part of the timestamp before the milliseconds: the lines of a batch share a few seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def decision_record(d: Decision, when: float | None = None) -> dict[str, Any]:
    """The audit line of one SignCertificateVerify / GetIdentity decision (``when``: its wall-clock
    time, taken on the event loop; the line itself is built in the writer thread)."""
    return {
        "type": "decision",
        "time": _now(when),
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

    def write_lines(self, lines: list[str]) -> None:
        """Append finished JSON lines in one write (writer thread only)."""
        try:
            self.reopenIfNeeded()
            if self.stream is None:
                self.stream = self._open()
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except OSError:  # a failed write or reopen must not kill the thread: count, log, go on
            self._failed(len(lines))
            return
        self._owner.lines_written += len(lines)

    def _failed(self, lines: int) -> None:
        self._owner.write_errors += 1
        self._owner.dropped += lines
        log.error("audit log write failed (%d line(s) lost): %s", lines, self.baseFilename, exc_info=False)


#: One encoder for every line: ``json.dumps`` with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_quote = json.encoder.encode_basestring  # type: ignore[attr-defined]  # a JSON string literal, non-ASCII kept


def _text(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def decision_line(d: Decision, when: float) -> str:
    """The JSON text of :func:`decision_record`, byte for byte (a test holds them together),
    written out directly: a decision line per signature is most of the writer thread's work, and
    this costs half of building the dict and encoding it."""
    return (f'{{"type":"decision","time":"{_now(when)}","request_id":{_text(d.request_id)},"rpc":{_text(d.rpc)},'
            f'"sub":{_text(d.subject)},"client":{_text(d.client)},"payload_len":{d.payload_len:d},'
            f'"payload_sha256":{_text(d.payload_sha256)},"outcome":{_text(d.outcome)},"stage":{_text(d.stage)},'
            f'"label":{_text(d.label)},"reason":{_text(d.reason)},"latency_ms":{round(d.latency * 1000, 3)!r}}}')


def _line(item: tuple[Any, ...]) -> str:
    kind, when, body = item
    return decision_line(body, when) if kind == "decision" else _ENCODER.encode(body)


class _BatchListener(logging.handlers.QueueListener):
    """The writer thread: formats and writes everything queued so far as one batch."""

    def __init__(self, q: queue.SimpleQueue[Any], file: _PrivateFileHandler) -> None:
        super().__init__(q)
        self.file = file

    def handle(self, record: Any) -> None:
        items = [record]
        sentinel = self._sentinel  # type: ignore[attr-defined]
        stopping = False
        while len(items) < BATCH:
            try:
                nxt = self.queue.get_nowait()
            except queue.Empty:
                break
            if nxt is sentinel:
                self.queue.put_nowait(nxt)  # stop after this batch (nothing was queued behind it)
                stopping = True
                break
            items.append(nxt)
        lines = []
        for item in items:
            try:
                lines.append(_line(item))
            except Exception:  # one bad item must not lose the batch or the thread
                self.file._failed(1)
        if lines:
            self.file.write_lines(lines)
        if len(items) < BATCH and not stopping:
            time.sleep(FLUSH_INTERVAL)  # let the next lines gather (see FLUSH_INTERVAL)


class _BoundedQueueHandler(logging.handlers.QueueHandler):
    """Never blocks: beyond ``max_queue`` items waiting, the item is dropped and counted.

    The items are ``(kind, wall time, Decision or admin record)`` tuples, not LogRecords: the
    loop only enqueues, the writer thread formats. The queue is a :class:`queue.SimpleQueue`
    (no lock and condition per put); the bound is checked here, by its only producer, the loop.
    """

    def __init__(self, q: queue.SimpleQueue[Any], owner: AuditLog, max_queue: int) -> None:
        super().__init__(q)  # type: ignore[arg-type]
        self._owner = owner
        self.max_queue = max_queue

    def enqueue(self, record: Any) -> None:
        q = self.queue
        if q.qsize() < self.max_queue:
            q.put_nowait(record)
            return
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
        self.max_queue = max_queue
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._producer = _BoundedQueueHandler(self._queue, self, max_queue)
        self._enqueue = self._producer.enqueue
        self._file: _PrivateFileHandler | None = None
        self._listener: _BatchListener | None = None

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
        self._listener = _BatchListener(self._queue, self._file)
        self._listener.start()

    def close(self) -> None:
        """Write what is queued (for at most ``close_timeout``), then stop. Blocking: run it in a thread."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # Not QueueListener.stop(): its join has no timeout. The sentinel goes behind what is
            # queued (the queue itself is unbounded; the bound is the producer's), then a bounded join.
            self._queue.put_nowait(listener._sentinel)  # type: ignore[attr-defined]
            thread = listener._thread  # type: ignore[attr-defined]
            if thread is not None:
                thread.join(self.close_timeout)
                if thread.is_alive():
                    log.error("audit log: writer did not drain within %.1f s at shutdown", self.close_timeout)
            listener._thread = None  # type: ignore[attr-defined]
        if self._file is not None:
            self._file.close()
            self._file = None

    # --- producers (event loop) ---------------------------------------------------------------
    def decision(self, d: Decision) -> None:
        """A decision observer: one line per decision, built and written by the writer thread."""
        if self.path is not None:
            self._enqueue(("decision", time.time(), d))

    def admin(self, **kw: Any) -> dict[str, Any]:
        record = admin_record(**kw)
        log.info("admin %s %s by %s from %s", record["operation"], record["outcome"], record["actor"] or "-",
                 record["client"] or "-", extra={"request_id": record["request_id"],
                                                 "fields": {"audit": record}})
        if self.path is not None:
            self._enqueue(("admin", None, record))
        return record


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
        yield ("swqos_audit_queue_limit", (), float(a.max_queue))


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
