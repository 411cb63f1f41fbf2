"""One fake clock for every test that injects time."""

from __future__ import annotations


class FakeClock:
    """A clock that moves only when the test says so: ``clock()`` returns :attr:`now`.

    Pass it wherever code takes a ``clock``/``monotonic`` callable. The unit is the caller's: the
    rate limiter reads integer nanoseconds (the default start), the JWT verifier float seconds
    (``FakeClock(1_800_000_000)``). Set ``clock.now`` or call :meth:`advance`.
    """

    def __init__(self, start: float = 10**15) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, delta: float) -> None:
        self.now += delta
