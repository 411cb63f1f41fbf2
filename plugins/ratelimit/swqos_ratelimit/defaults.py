"""Quotas for the development stack (``swqos serve --dev``), where every request comes from one
loopback address and the benchmark must measure the proxy, not the limiter.

The limiter stays *enabled* in development (so its cost is in every benchmark figure and its code
path is exercised), but its quotas are far above anything one machine sends. Production keeps the
strict defaults of :class:`swqos_ratelimit.settings.GcraSettings`.
"""

from __future__ import annotations

from typing import Any

_LOOSE = {"count": 1_000_000, "period": 1.0, "burst": 1_000_000}


def dev_settings() -> dict[str, Any]:
    """The ``[layers.rate_limit.gcra]`` table of the dev config, as a dict (a fresh copy each call)."""
    return {
        "address": dict(_LOOSE),
        "handshakes": dict(_LOOSE),
        "trader": dict(_LOOSE),
        "trader_sustained": {"count": 1_000_000_000, "period": 3600.0, "burst": 1_000_000_000},
    }


DEV_NOTICE = (
    "rate limits: development quotas (1,000,000/s per address and per trader); production defaults "
    "are 20/s per address, 8 handshakes/min per address, 60/min per trader. To tighten them, remove "
    "the [layers.rate_limit.gcra] quota tables from the dev config (the defaults apply) or set e.g. "
    "handshakes = { count = 8, period = 60, burst = 8 }."
)


def dev_notice() -> str:
    """One line for the dev server to print at start: the quotas are loose, and how to tighten them."""
    return DEV_NOTICE
