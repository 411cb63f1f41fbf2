"""The kill switch's decisions: which manifest to trust, and whether this release must halt.

Transport-free on purpose: the ``https`` and ``file`` sources hand it candidate (bytes,
signature) pairs and fetch failures; everything security-relevant happens here.

Rules (TUF's rollback, freeze and mix-and-match defences, docs/kill-switch.md):

- a candidate is *valid* only if its signature verifies with the pinned key, it parses as a v1
  manifest, its ``key_id`` (if any) is the pinned key's, its ``scope`` is ours, and it has not
  expired at the time the poll started;
- among valid candidates the highest version is taken; it is *accepted* only if its version is
  above the last accepted one (equal and byte-identical: unchanged; equal but different bytes,
  lower, or an older ``issued_at``: refused as a rollback);
- a refused candidate never replaces the last good manifest and never lifts a halt; it is
  counted by reason and logged as a security event;
- the halt follows the last good manifest: named release, named enclave measurement, or below
  ``min_version``; with no usable manifest (none yet, damaged state, or expired) the configured
  ``on_stale`` policy decides (``halt`` by default).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from swqos_core.killswitch.manifest import Manifest, ManifestError, format_time, parse_manifest
from swqos_core.killswitch.signing import PinnedKey, SignatureError, verify_blob
from swqos_core.killswitch.store import ManifestStore, StoreError

if TYPE_CHECKING:
    from swqos_core.state import ServiceState

StalePolicy = Literal["halt", "serve"]
security_log = logging.getLogger("swqos.security")


@dataclass(frozen=True)
class Candidate:
    """One fetched manifest and its signature file, with where it came from (for logs)."""

    origin: str
    manifest_bytes: bytes
    signature: bytes


class Rejected(Exception):
    def __init__(self, label: str, message: str) -> None:
        super().__init__(message)
        self.label = label
        self.message = message


def _now() -> datetime:
    return datetime.now(UTC)


class KillSwitch:
    """State machine behind one revocation source. Not thread-safe: used from one event loop."""

    def __init__(
        self,
        *,
        state: ServiceState,
        pinned: PinnedKey,
        scope: str,
        store: ManifestStore,
        on_stale: StalePolicy = "halt",
        halt_source: str = "kill_switch",
        logger: logging.Logger | None = None,
        alert_after_failures: int = 3,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.state = state
        self.pinned = pinned
        self.scope = scope
        self.store = store
        self.on_stale = on_stale
        self.halt_source = halt_source
        self.log = logger or logging.getLogger("swqos.revocation")
        self.alert_after_failures = max(1, alert_after_failures)
        self.clock = clock

        self.current: Manifest | None = None
        self._current_bytes: bytes | None = None
        #: Set when a state file existed but could not be trusted (fails closed until a new manifest).
        self.store_problem: str | None = None
        self._seen_measurement: str | None = None
        self._closed = False

        # --- counters, read by the metrics exporter (plain attributes, never reset) ---------
        self.polls_total = 0
        self.accepted_total = 0
        self.unchanged_total = 0
        self.rejected_total: Counter[str] = Counter()
        self.fetch_failures_total: Counter[str] = Counter()
        self.persist_failures_total = 0
        self.consecutive_failures = 0
        #: Unix time of the last poll that produced a valid manifest (new or unchanged).
        self.last_success_unix: float | None = None
        #: Why this source holds a halt right now, or None.
        self.halt_reason: str | None = None
        #: Set while no usable manifest is held (none yet, damaged state, or expired).
        self.stale_reason: str | None = None

    # --- read-only views for metrics and the CLI -----------------------------------------------
    @property
    def manifest_version(self) -> int | None:
        return self.current.version if self.current else None

    def manifest_age_seconds(self) -> float | None:
        """Seconds since the last good manifest was issued."""
        return (self.clock() - self.current.issued_at).total_seconds() if self.current else None

    def manifest_expires_in_seconds(self) -> float | None:
        return (self.current.expires - self.clock()).total_seconds() if self.current else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "manifest_version": self.manifest_version,
            "manifest_age_seconds": self.manifest_age_seconds(),
            "manifest_expires_in_seconds": self.manifest_expires_in_seconds(),
            "polls_total": self.polls_total,
            "accepted_total": self.accepted_total,
            "unchanged_total": self.unchanged_total,
            "rejected_total": dict(self.rejected_total),
            "fetch_failures_total": dict(self.fetch_failures_total),
            "persist_failures_total": self.persist_failures_total,
            "consecutive_failures": self.consecutive_failures,
            "last_success_unix": self.last_success_unix,
            "halted": self.halt_reason is not None,
            "halt_reason": self.halt_reason,
            "stale": self.stale_reason is not None,
        }

    # --- lifecycle -------------------------------------------------------------------------
    def restore(self) -> None:
        """Apply the persisted manifest (called before serving), then decide halt or not."""
        try:
            rec = self.store.load()
        except StoreError as exc:
            self._security("state", "damaged_state", str(exc))
            self.store_problem = str(exc)
            rec = None
        if rec is not None:
            try:
                manifest = self._check(Candidate(str(self.store.path), rec.manifest_bytes, rec.signature),
                                       now=None)
            except Rejected as exc:
                # The file is ours but no longer verifies (edited, or the pinned key changed).
                self._security(str(self.store.path), exc.label, f"persisted manifest refused: {exc.message}")
                self.store_problem = f"persisted manifest refused: {exc.message}"
            else:
                self.current, self._current_bytes = manifest, rec.manifest_bytes
                self.log.info("restored revocation manifest v%d (issued %s, expires %s)",
                              manifest.version, format_time(manifest.issued_at), format_time(manifest.expires))
        self.state.subscribe(self._on_state_change)
        self.evaluate()

    def close(self) -> None:
        self._closed = True

    # --- one poll ---------------------------------------------------------------------------
    def poll_result(
        self,
        candidates: Sequence[Candidate],
        failures: Sequence[tuple[str, str, str]] = (),
        *,
        started: datetime | None = None,
    ) -> str:
        """Digest one poll: fetched ``candidates`` and ``failures`` as (origin, label, message).

        ``failures`` whose label is ``oversize`` are refusals (someone served more than a
        manifest can be); the rest are transport failures. Returns the outcome:
        ``accepted``, ``unchanged`` or ``no_valid_manifest``.
        """
        started = started or self.clock()
        self.polls_total += 1
        for origin, label, message in failures:
            if label == "oversize":
                self._security(origin, label, message)
            else:
                self.fetch_failures_total[label] += 1
                self.log.warning("revocation manifest fetch from %s failed: %s", origin, message)
        valid: list[tuple[Manifest, Candidate]] = []
        for cand in candidates:
            try:
                valid.append((self._check(cand, now=started), cand))
            except Rejected as exc:
                self._security(cand.origin, exc.label, exc.message)
        outcome = "no_valid_manifest"
        if valid:
            manifest, cand = max(valid, key=lambda mc: mc[0].version)
            try:
                outcome = self._offer(manifest, cand)
            except Rejected as exc:
                self._security(cand.origin, exc.label, exc.message)
        if outcome == "no_valid_manifest":
            self.consecutive_failures += 1
            if self.consecutive_failures % self.alert_after_failures == 0:
                self.log.error(
                    "no valid revocation manifest for %d polls in a row; serving on v%s until it expires (%s)",
                    self.consecutive_failures, self.manifest_version,
                    format_time(self.current.expires) if self.current else "no manifest",
                )
        else:
            self.consecutive_failures = 0
            self.last_success_unix = time.time()
        self.evaluate()
        return outcome

    def _check(self, cand: Candidate, *, now: datetime | None) -> Manifest:
        """Everything that makes one document valid on its own. ``now=None`` skips expiry."""
        try:
            verify_blob(self.pinned, cand.manifest_bytes, cand.signature)
        except SignatureError as exc:
            raise Rejected(exc.label, str(exc)) from None
        try:
            manifest = parse_manifest(cand.manifest_bytes)
        except ManifestError as exc:
            raise Rejected(exc.label, str(exc)) from None
        if manifest.key_id is not None and manifest.key_id != self.pinned.key_id:
            raise Rejected("wrong_key_id", f"manifest names key {manifest.key_id[:16]}…, not the pinned key")
        if manifest.scope != self.scope:
            raise Rejected("wrong_scope", f"manifest is for scope {manifest.scope!r}, not {self.scope!r}")
        if now is not None and manifest.expired(now):
            raise Rejected("expired", f"manifest v{manifest.version} expired at {format_time(manifest.expires)}")
        return manifest

    def _offer(self, manifest: Manifest, cand: Candidate) -> str:
        cur = self.current
        if cur is not None:
            if manifest.version < cur.version:
                raise Rejected("rollback", f"manifest v{manifest.version} is older than the accepted v{cur.version}")
            if manifest.version == cur.version:
                if cand.manifest_bytes == self._current_bytes:
                    self.unchanged_total += 1
                    return "unchanged"
                raise Rejected("version_reuse", f"manifest v{manifest.version} differs from the accepted one "
                                                "with the same version")
            if manifest.issued_at < cur.issued_at:
                raise Rejected("rollback", f"manifest v{manifest.version} was issued before the accepted "
                                           f"v{cur.version}")
        try:
            self.store.save(cand.manifest_bytes, cand.signature, manifest.version)
        except OSError as exc:
            # Still apply it: a halt must take effect even on a full disk. After a restart the
            # previous record applies again, which can only re-impose a halt, never lift one.
            self.persist_failures_total += 1
            self.log.error("cannot persist revocation manifest v%d: %s", manifest.version, exc)
        self.current, self._current_bytes = manifest, cand.manifest_bytes
        self.store_problem = None
        self.accepted_total += 1
        self.log.warning("accepted revocation manifest v%d from %s (expires %s, revokes %d release(s), "
                         "%d measurement(s), min_version %s)", manifest.version, cand.origin,
                         format_time(manifest.expires), len(manifest.revoked_versions),
                         len(manifest.revoked_measurements), manifest.min_version)
        return "accepted"

    # --- the decision -----------------------------------------------------------------------
    def evaluate(self) -> None:
        """Halt or lift according to the last good manifest and the staleness policy."""
        if self._closed:
            return
        identity = self.state.enclave_identity
        measurement = identity.measurement if identity is not None else None
        self._seen_measurement = measurement
        reason: str | None = None
        stale: str | None = None
        cur = self.current
        if cur is not None:
            # A valid halt is honoured even after its manifest expired: only a newer valid
            # manifest lifts it.
            reason = cur.halt_reason(self.state.release_version, measurement)
            if reason is None and cur.expired(self.clock()):
                stale = (f"revocation manifest v{cur.version} expired at {format_time(cur.expires)} "
                         "and no newer one could be fetched")
        elif self.store_problem is not None:
            stale = f"revocation state unusable ({self.store_problem}) and no valid manifest fetched since"
        else:
            stale = "no valid revocation manifest accepted yet"
        if stale is not None and stale != self.stale_reason:
            self.log.error("%s; on_stale = %r", stale, self.on_stale)
        self.stale_reason = stale
        if stale is not None and self.on_stale == "halt":
            reason = stale
        self.halt_reason = reason
        if reason is not None:
            self.state.halt(self.halt_source, reason)
        else:
            self.state.lift(self.halt_source)

    def _on_state_change(self) -> None:
        identity = self.state.enclave_identity
        measurement = identity.measurement if identity is not None else None
        if measurement != self._seen_measurement:  # a different enclave image may be revoked
            self.evaluate()

    def _security(self, origin: str, label: str, message: str) -> None:
        self.rejected_total[label] += 1
        security_log.warning("SECURITY revocation manifest refused: origin=%s reason=%s: %s", origin, label, message)
