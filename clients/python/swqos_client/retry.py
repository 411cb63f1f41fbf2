"""When to retry, and how long to wait.

Only UNAVAILABLE and RESOURCE_EXHAUSTED are retried: both mean the proxy did not do the work (or,
for a lost reply, that repeating it is harmless because Ed25519 signing is deterministic). A
``retry-after`` hint from the server is a floor on the wait. Waits grow exponentially with jitter up
to a cap, and no wait or attempt ever runs past the caller's deadline: if the next attempt could not
start in time, the last error is raised at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

from .errors import RETRYABLE


@dataclass(frozen=True)
class RetryPolicy:
    #: Total attempts including the first; 1 disables retries.
    max_attempts: int = 4
    #: First backoff (seconds) before jitter.
    initial_backoff: float = 0.025
    multiplier: float = 2.0
    #: Upper bound on any single computed backoff.
    max_backoff: float = 0.5
    #: Fraction of the backoff that is randomised (0 = none, 1 = "full jitter").
    jitter: float = 0.5
    #: Give up instead of waiting when the server asks for more than this (seconds).
    max_retry_after: float = 5.0
    #: Do not start an attempt with less than this much time left (seconds).
    min_attempt_time: float = 0.005

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoff values must be non-negative and multiplier >= 1")

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Wait before retry number ``retry_number`` (1-based), ignoring any server hint."""
        r = rng or random
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry_number - 1))
        return base * (1.0 - self.jitter) + base * self.jitter * r.random()

    def next_delay(
        self,
        code: grpc.StatusCode,
        attempt: int,
        retry_after: float | None,
        remaining: float,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to stop and raise the last error.

        ``attempt`` is the number of attempts already made; ``remaining`` is the time left until the
        caller's deadline.
        """
        if code not in RETRYABLE or attempt >= self.max_attempts:
            return None
        delay = self.backoff(attempt, rng)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            # The hint is a floor; a little jitter above it keeps many clients from returning in lockstep.
            delay = max(delay, retry_after * (1.0 + 0.1 * (rng or random).random()))
        if delay + self.min_attempt_time > remaining:
            return None
        return delay


NO_RETRY = RetryPolicy(max_attempts=1)
