"""Host-proxy state shared by the server, health service, kill switch and admin API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("swqos.state")


@dataclass(frozen=True)
class EnclaveIdentity:
    """What the enclave reported about itself when the proxy connected."""

    public_key: bytes
    #: Hex PCR0 of the enclave image, or None outside a Nitro enclave.
    measurement: str | None
    #: Signatures the enclave has produced since it booted (it alone counts them).
    signatures: int


class ServiceState:
    """Whether the host-proxy may sign right now, and why not.

    Several sources can halt signing independently (the kill switch, release-integrity check,
    an operator's drain); signing resumes only when none holds a halt. Listeners (the health
    service, metrics) are told on every change.
    """

    def __init__(self, release_version: str) -> None:
        self.release_version = release_version
        self._halts: dict[str, str] = {}
        self.draining = False
        self.enclave_connected = False
        self.enclave_identity: EnclaveIdentity | None = None
        self._listeners: list[Callable[[], None]] = []

    # --- halts ---------------------------------------------------------------------------
    def halt(self, source: str, reason: str) -> None:
        if self._halts.get(source) != reason:
            log.error("signing halted by %s: %s", source, reason)
            self._halts[source] = reason
            self._changed()

    def lift(self, source: str) -> None:
        if self._halts.pop(source, None) is not None:
            log.warning("halt by %s lifted", source)
            self._changed()

    @property
    def halted(self) -> bool:
        return bool(self._halts)

    @property
    def halt_reasons(self) -> dict[str, str]:
        return dict(self._halts)

    def set_draining(self, draining: bool) -> None:
        if self.draining != draining:
            self.draining = draining
            self._changed()

    # --- enclave -------------------------------------------------------------------------
    def set_enclave(self, connected: bool, identity: EnclaveIdentity | None = None) -> None:
        changed = connected != self.enclave_connected or (identity is not None and identity != self.enclave_identity)
        self.enclave_connected = connected
        if identity is not None:
            self.enclave_identity = identity
        if changed:
            self._changed()

    # --- health --------------------------------------------------------------------------
    @property
    def serving(self) -> bool:
        """True when a well-formed, authorized request would reach the enclave."""
        return self.enclave_connected and not self._halts and not self.draining

    def not_serving_reason(self) -> str | None:
        if self._halts:
            return "halted: " + "; ".join(f"{k}: {v}" for k, v in sorted(self._halts.items()))
        if self.draining:
            return "draining"
        if not self.enclave_connected:
            return "enclave unreachable"
        return None

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)
        listener()

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a broken listener must not stop a halt from taking effect
                log.exception("state listener failed")
