"""What the Audit and Traders pages list: recent decisions and traders seen, both bounded."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from swqos_core.extensions import Decision

SIGN_RPC = "SignCertificateVerify"


@dataclass(frozen=True, slots=True)
class Seen:
    """One decision as the Audit page shows it (the Decision plus when the dashboard saw it)."""

    time: float
    decision: Decision


class RecentDecisions:
    """The last ``size`` decisions, oldest dropped first."""

    def __init__(self, size: int, clock: Callable[[], float] = time.time) -> None:
        self.ring: collections.deque[Seen] = collections.deque(maxlen=size)
        self.clock = clock
        self.dropped = 0

    def observe(self, d: Decision) -> None:
        if len(self.ring) == self.ring.maxlen:
            self.dropped += 1
        self.ring.append(Seen(self.clock(), d))

    def filtered(self, subject: str | None = None, outcome: str | None = None,
                 limit: int = 200) -> list[Seen]:
        """Newest first. ``outcome``: ``OK``, ``refused`` (anything else) or a gRPC status name."""
        out: list[Seen] = []
        for seen in reversed(self.ring):
            d = seen.decision
            if subject and d.subject != subject:
                continue
            if outcome == "refused" and d.outcome == "OK":
                continue
            if outcome and outcome != "refused" and d.outcome != outcome:
                continue
            out.append(seen)
            if len(out) >= limit:
                break
        return out


@dataclass(slots=True)
class Usage:
    requests: int = 0
    signatures: int = 0
    refusals: int = 0
    last_seen: float = 0.0
    last_outcome: str = ""
    last_client: str | None = None


class Subjects:
    """Traders seen in decisions with their usage since the proxy started (least recent dropped)."""

    def __init__(self, size: int, clock: Callable[[], float] = time.time) -> None:
        self.size = size
        self.clock = clock
        self.table: collections.OrderedDict[str, Usage] = collections.OrderedDict()
        self.evicted = 0

    def observe(self, d: Decision) -> None:
        if d.subject is None:
            return
        usage = self.table.get(d.subject)
        if usage is None:
            usage = self.table[d.subject] = Usage()
            if len(self.table) > self.size:
                self.table.popitem(last=False)
                self.evicted += 1
        else:
            self.table.move_to_end(d.subject)
        usage.requests += 1
        if d.outcome == "OK":
            if d.rpc == SIGN_RPC:
                usage.signatures += 1
        else:
            usage.refusals += 1
        usage.last_seen = self.clock()
        usage.last_outcome = d.outcome
        usage.last_client = d.client

    def recent(self, limit: int) -> Iterator[tuple[str, Usage]]:
        for i, (sub, usage) in enumerate(reversed(self.table.items())):
            if i >= limit:
                return
            yield sub, usage


class Reconcile:
    """Signatures returned (counted from decisions) against the enclave's own counter.

    The enclave counts signatures since it booted; the host counts what it returned since this
    proxy started. The baseline is the enclave's counter when the proxy (re)connected to it, with
    the host's count at that moment, so after a reconnect to a restarted enclave the comparison
    starts again from the new counter (and ``reconnects`` says so).
    """

    def __init__(self) -> None:
        self.returned = 0
        self.state: Any = None
        self._identity: Any = None
        self.base_enclave: int | None = None
        self.base_returned = 0
        self.reconnects = 0

    def bind(self, state: Any) -> None:
        self.state = state
        self._follow()

    def observe(self, d: Decision) -> None:
        self._follow()
        if d.outcome == "OK" and d.rpc == SIGN_RPC:
            self.returned += 1

    def _follow(self) -> None:
        identity = getattr(self.state, "enclave_identity", None) if self.state is not None else None
        if identity is not None and identity is not self._identity:
            if self._identity is not None:
                self.reconnects += 1
            self._identity = identity
            self.base_enclave = identity.signatures
            self.base_returned = self.returned

    def report(self, enclave_now: int | None) -> dict[str, Any]:
        """``enclave_now``: the enclave's counter, asked just now (None when it did not answer)."""
        self._follow()
        counted = self.returned - self.base_returned
        enclave_made = None
        if enclave_now is not None and self.base_enclave is not None:
            enclave_made = enclave_now - self.base_enclave
        return {
            "enclave_counter": enclave_now,
            "enclave_counter_at_connect": self.base_enclave,
            "enclave_made_since_connect": enclave_made,
            "host_returned_since_connect": counted,
            "host_returned_since_start": self.returned,
            "difference": None if enclave_made is None else enclave_made - counted,
            "reconnects": self.reconnects,
        }
