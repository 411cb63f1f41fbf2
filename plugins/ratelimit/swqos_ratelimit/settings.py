"""Settings of the ``gcra`` rate limiter (``[layers.rate_limit.gcra]``), with the production defaults.

Why these defaults (README.md has the longer version):

* ``handshakes``, 8 per minute per address, burst 8: the threat model's T3 rule, after Agave's
  ``DEFAULT_MAX_CONNECTIONS_PER_IPADDR_PER_MINUTE = 8``. Every SignCertificateVerify is one QUIC
  handshake in the validator's name, and a leader itself accepts no more than 8 new connections a
  minute from one IP (and holds at most 8 per peer), so an anonymous address gets no more.
* ``address``, 20 per second, burst 40, every RPC: caps the work (ES256 verification, TLS)
  anyone can cause before authentication.
* ``trader``, 60 per minute, burst 16 and ``trader_sustained``, 1200 per hour, burst 600: a
  verified trader can connect to the next 16 leaders at once, then one a second; over an hour
  no more than one every 3 s on average once the first 600 are spent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from swqos_ratelimit.gcra import Rate


@dataclass
class Quota:
    """``count`` requests every ``period`` seconds, at most ``burst`` back to back."""

    count: float
    period: float = 1.0
    #: Default: ``count`` rounded up (governor's ``Quota::per_minute(n)`` has burst n).
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.burst is None and isinstance(self.count, (int, float)) and self.count > 0 and math.isfinite(self.count):
            self.burst = max(1, math.ceil(self.count))
        self.rate()  # raises ValueError with the problem

    def rate(self) -> Rate:
        if self.burst is None:  # only when count was unusable, so say that
            raise ValueError(f"count must be a positive number, got {self.count!r}")
        if self.burst > 1_000_000_000:
            raise ValueError(f"burst {self.burst} is unreasonably large")
        return Rate.per(self.count, self.period, self.burst)

    def as_dict(self) -> dict[str, float | int]:
        return {"count": self.count, "period": self.period, "burst": self.burst or 1}


@dataclass
class TraderOverride:
    """Per-trader quotas (``[layers.rate_limit.gcra.traders."<sub>"]``); unset keys keep the default."""

    rate: Quota | None = None
    sustained: Quota | None = None


@dataclass
class AddressOverride:
    """Per-address quotas (``[layers.rate_limit.gcra.addresses."<ip or /64>"]``), for known egress
    addresses of traders who need more handshakes than an anonymous address gets."""

    rate: Quota | None = None
    handshakes: Quota | None = None


@dataclass
class GcraSettings:
    #: Every RPC, per client address (IPv4 /32, IPv6 /64), before authentication.
    address: Quota = field(default_factory=lambda: Quota(20, 1.0, 40))
    #: SignCertificateVerify calls per client address, before authentication (threat T3).
    handshakes: Quota = field(default_factory=lambda: Quota(8, 60.0, 8))
    #: SignCertificateVerify calls per verified trader (``sub``), after authentication.
    trader: Quota = field(default_factory=lambda: Quota(60, 60.0, 16))
    #: Long-window cap per verified trader, so one that stays just under ``trader`` all day is bounded.
    trader_sustained: Quota = field(default_factory=lambda: Quota(1200, 3600.0, 600))
    #: IPv6 aggregates (issue 13): every RPC and handshakes per /56 and per /48, each its own quota,
    #: so a /48 holder's 65,536 /64s share one quota instead of having 65,536 fresh ones.
    address_56: Quota = field(default_factory=lambda: Quota(40, 1.0, 80))
    address_48: Quota = field(default_factory=lambda: Quota(80, 1.0, 160))
    handshakes_56: Quota = field(default_factory=lambda: Quota(16, 60.0, 16))
    handshakes_48: Quota = field(default_factory=lambda: Quota(32, 60.0, 32))
    #: Count IPv6 clients against their /56 and /48 as well as their /64.
    ipv6_aggregates: bool = True
    #: Hard cap on tracked addresses (each address table holds at most this many).
    max_tracked_addresses: int = 100_000
    #: Hard cap on tracked traders (each of the two trader tables holds at most this many).
    max_tracked_traders: int = 10_000
    #: Seconds between sweeps that forget idle keys (they also happen whenever a table is full).
    sweep_interval: float = 10.0
    #: Per-trader quotas by ``sub``.
    traders: dict[str, TraderOverride] = field(default_factory=dict)
    #: Per-address quotas by IP address or IPv6 /64, /56 or /48 (``"2001:db8:1:2::/64"``).
    addresses: dict[str, AddressOverride] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_tracked_addresses", "max_tracked_traders"):
            value = getattr(self, name)
            if isinstance(value, int) and not 1 <= value <= 50_000_000:
                raise ValueError(f"{name} must be between 1 and 50000000, got {value}")
        if isinstance(self.sweep_interval, (int, float)) and not 0.01 <= self.sweep_interval <= 3600:
            raise ValueError(f"sweep_interval must be between 0.01 and 3600 seconds, got {self.sweep_interval}")
