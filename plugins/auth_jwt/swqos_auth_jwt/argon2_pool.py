"""A fixed pool of Argon2id verifier threads behind a bounded queue that refuses early.

Why not ``anyio.to_thread``: a ``CapacityLimiter`` bounds how many verifications run at once, but
not the worker threads behind them (anyio's default pool grows to 40), and glibc gives each of
those threads its own malloc arena that keeps the 19 MiB Argon2 buffer after ``free``. Measured on
this VM, 200 wrong-secret verifies: anyio's pool 34 -> 930 MB RSS (322 MB after ``malloc_trim(0)``);
a fixed pool of 2 threads 34 -> 72 MB (``malloc_trim(0)`` gives nothing back: the freed buffer is
the top of a thread heap whose trim threshold glibc has raised); a fixed pool of 8: 34 -> 187 MB.
With the mmap threshold pinned at 4 MiB (:func:`return_large_allocations`), every Argon2 buffer
is its own mapping, unmapped on ``free``: 34 -> 34 MB whatever the pool size, for roughly 0-20 %
more time per verify (the kernel zero-fills 19 MiB each time).

The queue: a call that would wait longer than ``max_wait_seconds`` (estimated from the measured
verify time) or find ``max_waiting`` calls ahead of it is refused at once with RESOURCE_EXHAUSTED
and a ``retry-after`` hint, instead of queueing past the 100 ms call deadline: a refusal the client
can act on beats a DEADLINE_EXCEEDED that still cost a verification. A call whose deadline cancels
it while it is still queued is removed from the queue without running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from swqos_core.errors import resource_exhausted

log = logging.getLogger("swqos.auth.api_token")

T = TypeVar("T")

#: glibc's ``M_MMAP_THRESHOLD`` parameter number for ``mallopt`` (malloc.h).
M_MMAP_THRESHOLD = -3
#: Allocations from this size up are served by mmap and unmapped on free. Argon2's 19 MiB buffer
#: is far above it; the proxy's own allocations (payloads, protobufs, TLS records) are far below.
MMAP_THRESHOLD_BYTES = 4 << 20
#: Verify time assumed until one has been measured (the README's figure for this VM).
INITIAL_VERIFY_SECONDS = 0.02

_memory_lock = threading.Lock()
_memory_returned: bool | None = None


def return_large_allocations() -> bool:
    """Pin glibc's mmap threshold so large buffers go back to the OS on ``free``; once per process.

    Process-wide by nature (there is one allocator); harmless for allocations below 4 MiB, which
    behave as before. Returns False where it is not available (not glibc), and says so once.
    """
    global _memory_returned
    with _memory_lock:
        if _memory_returned is None:
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _memory_returned = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            except (OSError, AttributeError):
                _memory_returned = False
            if not _memory_returned:
                log.info("mallopt(M_MMAP_THRESHOLD) not available: Argon2 buffers stay resident "
                         "(at most one per verifier thread)")
        return _memory_returned


class VerifierPool:
    """``workers`` threads, at most ``max_waiting`` queued calls, refusals counted.

    Counters (plain attributes, read by the plugin's metrics): ``runs`` verifications completed,
    ``refused_queue_full`` and ``refused_wait`` early refusals, ``cancelled`` calls dropped from the
    queue by their deadline before running.
    """

    def __init__(self, workers: int, max_waiting: int, max_wait_seconds: float, *, name: str = "argon2",
                 perf_counter: Callable[[], float] = time.perf_counter) -> None:
        if workers < 1 or max_waiting < 0 or max_wait_seconds < 0:
            raise ValueError("workers >= 1, max_waiting >= 0, max_wait_seconds >= 0")
        self.workers = workers
        self.max_waiting = max_waiting
        self.max_wait_seconds = max_wait_seconds
        self._perf = perf_counter
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"swqos-{name}")
        self._lock = threading.Lock()  # the counters below change in worker threads too
        self._pending = 0  # submitted and not finished (running + queued)
        self._verify_seconds = INITIAL_VERIFY_SECONDS  # moving average of one verification
        self.runs = 0
        self.refused_queue_full = 0
        self.refused_wait = 0
        self.cancelled = 0

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def waiting(self) -> int:
        return max(self._pending - self.workers, 0)

    def estimated_wait(self) -> float:
        """Seconds a call submitted now would wait for a free worker."""
        with self._lock:
            return (self._pending // self.workers) * self._verify_seconds

    def _refusal_hint(self) -> float:
        return round(max(self.estimated_wait(), self._verify_seconds, 0.01), 3)

    def submit(self, fn: Callable[..., T], *args: object) -> concurrent.futures.Future[T]:
        """Queue ``fn(*args)`` for a pool thread, or raise RESOURCE_EXHAUSTED without queueing."""
        with self._lock:
            full = self._pending >= self.workers + self.max_waiting
            slow = not full and (self._pending // self.workers) * self._verify_seconds > self.max_wait_seconds
            if full:
                self.refused_queue_full += 1
            elif slow:
                self.refused_wait += 1
            else:
                self._pending += 1
        if full or slow:
            raise resource_exhausted("api token verification busy", retry_after=self._refusal_hint(),
                                     label="api_token_busy")
        try:
            cf = self._executor.submit(self._timed, fn, *args)
        except RuntimeError:  # shut down: closing
            with self._lock:
                self._pending -= 1
            raise resource_exhausted("api token verification closed", retry_after=1.0, label="api_token_busy") from None
        cf.add_done_callback(self._finished)
        return cf

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """:meth:`submit` and wait; cancelling the wait drops the call if it has not started."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _timed(self, fn: Callable[..., T], *args: object) -> T:
        t0 = self._perf()
        try:
            return fn(*args)
        finally:
            took = self._perf() - t0
            with self._lock:
                self.runs += 1
                self._verify_seconds += (took - self._verify_seconds) * 0.2

    def _finished(self, cf: concurrent.futures.Future[object]) -> None:
        with self._lock:
            self._pending -= 1
            if cf.cancelled():
                self.cancelled += 1

    def stats(self) -> dict[str, float | int]:
        with self._lock:
            return {"workers": self.workers, "pending": self._pending, "runs": self.runs,
                    "refused_queue_full": self.refused_queue_full, "refused_wait": self.refused_wait,
                    "cancelled": self.cancelled, "verify_seconds": round(self._verify_seconds, 4)}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
