"""``[proxy.admin]``: where the operator's admin API and the metrics listen, and who may call them.

Kept free of imports from the rest of swqos_core so that :mod:`swqos_core.config` can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class AdminSettings:
    """``[proxy.admin]`` (the table's presence turns the admin listener on)."""

    #: ``127.0.0.1:9443``, ``[::1]:9443`` or ``unix:///run/swqos/admin.sock``. Any other address is
    #: refused at startup unless ``client_ca`` (mutual TLS) is set: threat T7.
    listen: str = "127.0.0.1:9443"
    #: Store of Argon2id admin API tokens (``swqos token create --role admin --store FILE``).
    token_store: Path | None = None
    #: The registered authenticator that verifies those tokens (auth_jwt's ``api_token``).
    token_authenticator: str = "api_token"  # noqa: S105 (an implementation name, not a secret)
    #: Server certificate and key (PEM) for a TCP listener; required with ``client_ca``.
    tls_cert: Path | None = None
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
    #: Subjects remembered from traffic, for the unknown-trader check.
    known_subjects_max: int = 100_000
    #: Unix socket mode.
    socket_mode: int = 0o600

    def __post_init__(self) -> None:
        if not 256 <= self.max_body_bytes <= 1024 * 1024:
            raise ValueError("admin.max_body_bytes must be between 256 and 1048576")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("admin.tls_cert and admin.tls_key go together")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("admin.client_ca (mutual TLS) needs admin.tls_cert and admin.tls_key")
        if self.socket_mode & 0o007:
            raise ValueError("admin.socket_mode must not give others access (e.g. 0o600 or 0o660)")
        if self.known_subjects_max < 0:
            raise ValueError("admin.known_subjects_max must be >= 0")
