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


def trim() -> bool:
    """Return free heap pages to the kernel now; False where not glibc (or nothing to give back)."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


async def trim_periodically(interval: float) -> None:
    """Call :func:`trim` every ``interval`` seconds in a worker thread, until cancelled."""
    if _libc() is None:
        log.info("not glibc: no periodic malloc_trim")
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(trim)
