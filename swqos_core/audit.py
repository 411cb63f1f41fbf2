"""The audit log: one JSON line per signing decision and one per admin action.

Written by the host-proxy to the file named by ``[proxy] audit_log`` (created 0600, appended to,
reopened when logrotate moves it). Never contains a token, a key or a hash of either: a decision
line carries the SHA-256 of the *payload* (a CertificateVerify input, not a secret) so an
operator can match it with the enclave's signature count and with a trader's own records.

Writing never blocks the event loop on the disk: the loop only serialises the line and puts it
on a bounded queue (a few microseconds); one writer thread drains the queue and writes everything
waiting with a single ``write(2)``. At low load that is one write per line, as soon as it is
decided; under load the lines batch themselves. Nothing waits in a user-space buffer for a timer,
so a crash loses only what was still queued. If the disk stalls long enough to fill the queue,
further lines are dropped and counted (``swqos_audit_dropped_total``), with an error logged,
rather than stalling signing; docs/operations.md explains the choice.

Admin actions are also written to the process log (logger ``swqos.audit``), so they are kept even
when no audit file is configured.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swqos_core.pipeline import Decision

log = logging.getLogger("swqos.audit")

#: Lines waiting for the writer thread before new ones are dropped (~25 MB at worst).
MAX_QUEUE = 100_000
#: How often the writer checks whether the file was rotated away.
ROTATE_CHECK_SECONDS = 1.0
_STOP = object()


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
                 status: int | None = None) -> dict[str, Any]:
    """The audit line of one admin API request (accepted, failed or refused)."""
    return {
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


class AuditLog:
    """Append-only JSON lines, written by one thread. ``path=None`` keeps only the admin lines,
    in the process log."""

    def __init__(self, path: Path | None, *, max_queue: int = MAX_QUEUE) -> None:
        self.path = path
        self.lines_written = 0
        self.dropped = 0
        self.write_errors = 0
        self._queue: queue.Queue[object] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None

    @property
    def enabled(self) -> bool:
        return self.path is not None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Open the file (a startup error if impossible) and start the writer thread."""
        if self.path is None:
            return
        self._open()
        self._thread = threading.Thread(target=self._run, name="swqos-audit", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop. Blocking: call it from a thread in async code."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- producers (event loop) ---------------------------------------------------------------
    def decision(self, d: Decision) -> None:
        """A pipeline observer: one line per decision."""
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
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # log at powers of two, not per line
                log.error("audit queue full: %d lines dropped so far (is %s writable and fast?)",
                          self.dropped, self.path)

    # --- the writer thread --------------------------------------------------------------------
    def _open(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise OSError(f"{self.path} is not a regular file")
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)  # the log names traders and addresses: owner only
        old, self._fd, self._ino = self._fd, fd, (st.st_dev, st.st_ino)
        if old is not None:
            os.close(old)

    def _rotated(self) -> bool:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._ino

    def _run(self) -> None:
        last_check = time.monotonic()
        stopping = False
        while not stopping:
            batch: list[str] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    batch.append(item)  # type: ignore[arg-type]
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            now = time.monotonic()
            if now - last_check >= ROTATE_CHECK_SECONDS:
                last_check = now
                try:
                    if self._rotated():
                        self._open()
                except OSError as exc:
                    self.write_errors += 1
                    log.error("cannot reopen audit log %s: %s", self.path, exc)
            if batch:
                self._write("".join(batch).encode(), len(batch))

    def _write(self, data: bytes, lines: int) -> None:
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)  # type: ignore[arg-type]
                view = view[written:]
            self.lines_written += lines
        except OSError as exc:
            self.write_errors += 1
            self.dropped += lines
            log.error("audit log write failed (%d lines lost): %s", lines, exc)


__all__ = ["AuditLog", "admin_record", "decision_record"]
