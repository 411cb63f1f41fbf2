"""Giving memory back after a flood.

A connection or handshake flood makes grpc core and OpenSSL allocate many small blocks from
glibc's malloc; when the flood ends they are freed, but glibc keeps the pages (per-thread arenas,
fragmented top chunks), so the process's RSS stays at its peak. Two measured remedies
(docs/operations.md, "limits and floods"): fewer arenas, set once at startup, and a periodic
``malloc_trim(0)`` run off the event loop that returns free pages to the kernel.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time

log = logging.getLogger("swqos.memory")

_M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


def limit_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas for threads created from now on; False where not glibc."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, arenas))


#: A trim longer than this is logged: ``malloc_trim`` holds each arena's lock while it runs, so
#: every thread allocating from that arena (the event loop's included) waits for it.
SLOW_TRIM_S = 0.02


def trim() -> bool:
    """Return free heap pages to the kernel now; False where not glibc (or nothing to give back)."""
    libc = _libc()
    if libc is None:
        return False
    started = time.perf_counter()
    returned = bool(libc.malloc_trim(0))
    took = time.perf_counter() - started
    if took > SLOW_TRIM_S:
        log.warning("malloc_trim took %.0f ms", took * 1000)
    return returned


async def trim_periodically(interval: float) -> None:
    """Call :func:`trim` every ``interval`` seconds in a worker thread, until cancelled."""
    if _libc() is None:
        log.info("not glibc: no periodic malloc_trim")
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(trim)
