"""Compatibility name: the brute-force guard lives in the kernel, :mod:`swqos_core.guard`."""

from swqos_core.guard import STRIKE_MEMORY_SECONDS, BruteForceGuard, BruteForceSettings

__all__ = ["STRIKE_MEMORY_SECONDS", "BruteForceGuard", "BruteForceSettings"]
