"""Settings of the two services: ``[layers.service.admin]`` and ``[layers.service.audit]``.

The admin listener's exposure rule (threat T7) is checked when the settings are built, so
``swqos config check`` and startup both refuse a public admin address without mutual TLS before
anything binds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swqos_core.guard import BruteForceSettings
from swqos_core.net import ListenAddress, parse_listen

WHERE = "[layers.service.admin]"


@dataclass
class AdminSettings:
    """``[layers.service.admin]``: where the admin API and the metrics listen, and who may call them."""

    #: ``127.0.0.1:9443``, ``[::1]:9443`` or ``unix:///run/swqos/admin.sock``. Any other address is
    #: refused unless ``client_ca`` (mutual TLS) is set: threat T7.
    listen: str = "127.0.0.1:9443"
    #: Name of a registered authenticator (kind ``auth``) that verifies admin tokens, e.g.
    #: ``api_token``. Unset: only client certificates authenticate.
    token_authenticator: str | None = None
    #: That authenticator's own settings, exactly as its ``[layers.auth.<name>]`` table would hold
    #: them; validated against its registration at startup (``[layers.service.admin.token_auth]``).
    token_auth: dict[str, Any] = field(default_factory=dict)
    #: Server certificate (PEM) for a TCP listener (TLS 1.3 only); required with ``client_ca``.
    tls_cert: Path | None = None
    #: Its private key (PEM, 0600).
    tls_key: Path | None = None
    #: PEM CA: require a client certificate it signed (mutual TLS). A verified certificate
    #: authenticates the operator; required for any non-loopback ``listen``.
    client_ca: Path | None = None
    #: Also require an admin token from clients that present a valid certificate.
    require_token_with_mtls: bool = False
    #: Serve ``GET /metrics`` and ``GET /healthz`` without a credential (the listener itself is
    #: loopback, a 0600 Unix socket or mutual TLS). False: they need a credential too.
    metrics_open: bool = True
    #: Largest admin request body.
    max_body_bytes: int = 16 * 1024
    #: Largest request head (request line and headers); larger gets 431.
    max_head_bytes: int = 16 * 1024
    #: Seconds a client has to send its whole request; later gets 408.
    read_timeout_seconds: float = 10.0
    #: Connections served at once; more are answered 503 and closed.
    max_connections: int = 64
    #: Subjects remembered from traffic, for the unknown-trader check.
    known_subjects_max: int = 100_000
    #: Unix socket mode.
    socket_mode: int = 0o600
    #: Admin authentication failures, counted per client address bucket by the kernel's guard
    #: (``[layers.service.admin.brute_force]``): backoff after 5 in a row, ban after 20 in 60 s.
    brute_force: BruteForceSettings = field(default_factory=BruteForceSettings)

    def __post_init__(self) -> None:
        if not 256 <= self.max_body_bytes <= 1024 * 1024:
            raise ValueError("max_body_bytes must be between 256 and 1048576")
        if not 1024 <= self.max_head_bytes <= 64 * 1024:
            raise ValueError("max_head_bytes must be between 1024 and 65536")
        if not 0 < self.read_timeout_seconds <= 300:
            raise ValueError("read_timeout_seconds must be in (0, 300]")
        if not 1 <= self.max_connections <= 10_000:
            raise ValueError("max_connections must be between 1 and 10000")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.socket_mode & 0o007:
            raise ValueError("socket_mode must not give others access (e.g. 0o600 or 0o660)")
        if self.known_subjects_max < 0:
            raise ValueError("known_subjects_max must be >= 0")
        if self.token_auth and self.token_authenticator is None:
            raise ValueError("token_auth needs token_authenticator (the auth implementation it configures)")
        check_exposure(self)


def listen_address(settings: AdminSettings) -> ListenAddress:
    """The one listen-address parser of the kernel, TCP or a Unix socket. Raises ValueError."""
    return parse_listen(settings.listen, where=f"{WHERE} listen", kinds=("tcp", "unix"))


def check_exposure(settings: AdminSettings) -> ListenAddress:
    """T7: the admin API is never reachable from elsewhere without mutual TLS. Raises ValueError."""
    addr = listen_address(settings)
    if addr.kind == "tcp" and not addr.is_loopback and settings.client_ca is None:
        raise ValueError(
            f"listen = {settings.listen!r} is not a loopback address; the admin API is served beyond this "
            "host only with mutual TLS. Set client_ca (with tls_cert and tls_key), or listen on 127.0.0.1, "
            "[::1] or a unix:// socket (threat model T7)")
    if settings.token_authenticator is None and settings.client_ca is None:
        raise ValueError("no way to authenticate the operator: set token_authenticator (with its token_auth "
                         "table, e.g. Argon2id admin API tokens) and/or client_ca (mutual TLS)")
    return addr


@dataclass
class AuditSettings:
    """``[layers.service.audit]``: the JSON-lines audit log of decisions and admin actions."""

    #: The audit file (created 0600, appended to, reopened when logrotate moves it).
    path: Path
    #: Lines waiting for the writer thread; beyond that lines are dropped and counted.
    max_queue: int = 100_000
    #: Seconds ``close`` waits for queued lines to be written at shutdown.
    close_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not 16 <= self.max_queue <= 10_000_000:
            raise ValueError("max_queue must be between 16 and 10000000")
        if not 0 < self.close_timeout_seconds <= 60:
            raise ValueError("close_timeout_seconds must be in (0, 60]")
