"""Interleaved rounds: every target measured in every round, the order alternating, so a noisy
neighbour, a frequency change or a warming cache hits every target alike. Reported as min and
median over rounds (the machine is shared: the min is the least disturbed round, the median the
typical one); ratios and differences are taken within a round, then summarised."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any


def orders(targets: Sequence[str], rounds: int) -> list[list[str]]:
    """Round i runs the targets forward when i is even, reversed when odd (A B C, C B A, ...)."""
    return [list(targets) if i % 2 == 0 else list(reversed(targets)) for i in range(rounds)]


def spread(values: Sequence[float | None], digits: int = 3) -> dict[str, Any]:
    xs = [v for v in values if v is not None]
    if not xs:
        return {"min": None, "median": None, "max": None, "n": 0}
    return {"min": round(min(xs), digits), "median": round(statistics.median(xs), digits),
            "max": round(max(xs), digits), "n": len(xs)}


def paired(rounds: list[dict[str, dict[str, Any]]], a: str, b: str, key: str,
           op: Callable[[float, float], float]) -> list[float | None]:
    """``op(round[b][key], round[a][key])`` for every round holding both (e.g. b / a, b - a)."""
    out: list[float | None] = []
    for r in rounds:
        x, y = r.get(b, {}).get(key), r.get(a, {}).get(key)
        try:
            out.append(None if x is None or y is None else op(x, y))
        except ZeroDivisionError:
            out.append(None)
    return out


def ratio(x: float, y: float) -> float:
    return x / y


def diff(x: float, y: float) -> float:
    return x - y
