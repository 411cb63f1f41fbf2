"""The kill switch's decisions: which manifest to trust, and whether this release must halt.

Transport-free on purpose: the ``https`` and ``file`` sources hand it candidate (bytes,
signature) pairs and fetch failures; everything security-relevant happens here.

Rules (TUF's rollback, freeze, mix-and-match and threshold defences, docs/kill-switch.md):

- a candidate is *valid* only if at least ``halt_threshold`` distinct trusted keys signed it (the
  trust: one pinned key, threshold 1; or the manifest keys of the current trust root, see
  :mod:`~swqos_killswitch.trust`), it parses as a v1 manifest, its ``key_id`` (if any) is a trusted
  key's, its ``scope`` is ours, it was not issued in the future, it has not expired at the time the
  poll started, and the trust root itself has not expired;
- valid candidates are offered highest version first; one is *accepted* only if its version is
  above the last accepted one (equal and byte-identical: unchanged; equal but different bytes,
  lower, or an older ``issued_at``: refused as a rollback);
- a candidate that would *lift* the halt the last good manifest imposes on this release also needs
  ``lift_threshold`` signers and a ``not_before`` at least the root's ``lift_timelock_seconds`` after
  its ``issued_at``; before ``not_before`` it is held (``lift_timelocked``): the halt stays, and the
  pending lift shows in status and metrics so the key holders can answer it in time;
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

from swqos_killswitch.manifest import Manifest, ManifestError, format_time, parse_manifest
from swqos_killswitch.root import RootError
from swqos_killswitch.signing import PinnedKey, SignatureError
from swqos_killswitch.store import ManifestStore, RootChainStore, StoreError
from swqos_killswitch.trust import RootTrust, SingleKeyTrust, Tally, Trust

if TYPE_CHECKING:
    from swqos_core.state import ServiceState

StalePolicy = Literal["halt", "serve"]
security_log = logging.getLogger("swqos.security")
#: How far ahead of this host's clock an ``issued_at`` may be (clock skew between signer and proxy).
MAX_CLOCK_SKEW = 300.0


@dataclass(frozen=True)
class PendingLift:
    """A valid lift waiting for its ``not_before`` (the timelock)."""

    version: int
    not_before: datetime
    signed_by: tuple[str, ...]
    origin: str


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
        pinned: PinnedKey | None = None,
        trust: Trust | None = None,
        scope: str,
        store: ManifestStore,
        root_store: RootChainStore | None = None,
        on_stale: StalePolicy = "halt",
        halt_source: str = "kill_switch",
        logger: logging.Logger | None = None,
        alert_after_failures: int = 3,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if trust is None:
            if pinned is None:
                raise ValueError("KillSwitch needs a pinned key or a trust root")
            trust = SingleKeyTrust(pinned)
        self.state = state
        self.trust: Trust = trust
        self.scope = scope
        self.store = store
        self.root_store = root_store
        self.on_stale = on_stale
        self.halt_source = halt_source
        self.log = logger or logging.getLogger("swqos.revocation")
        self.alert_after_failures = max(1, alert_after_failures)
        self.clock = clock

        self.current: Manifest | None = None
        self._current_bytes: bytes | None = None
        #: Set when a state file existed but could not be trusted (fails closed until a new manifest).
        self.store_problem: str | None = None
        #: Why the persisted manifest that could not be re-verified halted this release, if it did:
        #: a halt stays a halt, whatever ``on_stale`` says, until a valid lift arrives.
        self.store_halt: str | None = None
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
        #: Signatures that did not count, by reason (duplicate_signer, unknown_key, ...).
        self.ignored_signatures_total: Counter[str] = Counter()
        self.root_rotations_total = 0
        #: Who signed the accepted manifest (distinct trusted key ids).
        self.signed_by: tuple[str, ...] = ()
        #: The last candidate's signature count, for operators: which keys signed, which were ignored.
        self.last_verification: dict[str, Any] | None = None
        #: A valid lift that waits for its not_before, as of the last poll.
        self.pending_lift: PendingLift | None = None

    # --- read-only views for metrics and the CLI -----------------------------------------------
    @property
    def manifest_version(self) -> int | None:
        return self.current.version if self.current else None

    def manifest_age_seconds(self) -> float | None:
        """Seconds since the last good manifest was issued."""
        return (self.clock() - self.current.issued_at).total_seconds() if self.current else None

    def manifest_expires_in_seconds(self) -> float | None:
        return (self.current.expires - self.clock()).total_seconds() if self.current else None

    def lift_timelock_remaining(self) -> float | None:
        """Seconds until a pending lift takes effect (None when none is pending)."""
        if self.pending_lift is None:
            return None
        return max(0.0, (self.pending_lift.not_before - self.clock()).total_seconds())

    def snapshot(self) -> dict[str, Any]:
        pending = self.pending_lift
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
            "stale_reason": self.stale_reason,
            "ignored_signatures_total": dict(self.ignored_signatures_total),
            "root_rotations_total": self.root_rotations_total,
            "trust": self.trust.describe(),
            "signed_by": list(self.signed_by),
            "last_verification": self.last_verification,
            "pending_lift": None if pending is None else {
                "version": pending.version, "not_before": format_time(pending.not_before),
                "seconds_left": self.lift_timelock_remaining(), "signed_by": list(pending.signed_by),
                "origin": pending.origin},
        }

    # --- lifecycle -------------------------------------------------------------------------
    def restore_roots(self) -> None:
        """Re-verify the persisted root chain from the pinned root; keep the prefix that verifies."""
        if not isinstance(self.trust, RootTrust) or self.root_store is None:
            return
        try:
            pairs = self.root_store.load()
        except StoreError as exc:
            self._security("state", "damaged_state", str(exc))
            return
        for data, signature in pairs:
            try:
                self.trust.extend(data, signature, None)  # expiry is judged on the newest root, in evaluate()
            except (RootError, SignatureError) as exc:
                self._security(str(self.root_store.path), "damaged_state", f"persisted root refused: {exc}")
                return
        if pairs:
            self.log.info("restored trust root v%d", self.trust.version)

    def restore(self) -> None:
        """Apply the persisted roots and manifest (called before serving), then decide halt or not."""
        self.restore_roots()
        try:
            rec = self.store.load()
        except StoreError as exc:
            self._security("state", "damaged_state", str(exc))
            self.store_problem = str(exc)
            rec = None
        if rec is not None:
            try:
                manifest, tally = self._check(Candidate(str(self.store.path), rec.manifest_bytes, rec.signature),
                                              now=None)
            except Rejected as exc:
                self.store_halt = self._unverified_halt(rec.manifest_bytes)
                # The file is ours but no longer verifies (edited, or the pinned key changed).
                self._security(str(self.store.path), exc.label, f"persisted manifest refused: {exc.message}")
                self.store_problem = f"persisted manifest refused: {exc.message}"
            else:
                self.current, self._current_bytes = manifest, rec.manifest_bytes
                self.signed_by = tally.valid
                self.log.info("restored revocation manifest v%d (issued %s, expires %s)",
                              manifest.version, format_time(manifest.issued_at), format_time(manifest.expires))
        self.state.subscribe(self._on_state_change)
        self.evaluate()

    def close(self) -> None:
        self._closed = True

    # --- roots ------------------------------------------------------------------------------
    def offer_root(self, origin: str, data: bytes, signature: bytes, *, started: datetime | None = None) -> bool:
        """Try the next root of the chain (fetched by the source). True if it is now trusted."""
        if not isinstance(self.trust, RootTrust):
            return False
        try:
            root = self.trust.extend(data, signature, started or self.clock())
        except (RootError, SignatureError) as exc:
            label = exc.label if exc.label.startswith("root_") else f"root_{exc.label}"
            self._security(origin, label, str(exc))
            return False
        self.root_rotations_total += 1
        if self.root_store is not None:
            try:
                self.root_store.save([(link.data, link.signature) for link in self.trust.chain[1:]])
            except OSError as exc:
                # Still trusted in memory; after a restart the chain is fetched again from the mirrors.
                self.persist_failures_total += 1
                self.log.error("cannot persist trust root v%d: %s", root.version, exc)
        security_log.warning("SECURITY trust root rotated to v%d from %s: manifest keys %s, halt threshold %d, "
                             "lift threshold %d, lift timelock %d s", root.version, origin,
                             ", ".join(k[:16] for k in root.manifest_keyids), root.halt_threshold,
                             root.lift_threshold, root.lift_timelock_seconds)
        self.evaluate()
        return True

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
        self.pending_lift = None  # re-established below if the lift is still being served
        for origin, label, message in failures:
            if label == "oversize":
                self._security(origin, label, message)
            else:
                self.fetch_failures_total[label] += 1
                self.log.warning("revocation manifest fetch from %s failed: %s", origin, message)
        valid: list[tuple[Manifest, Tally, Candidate]] = []
        for cand in candidates:
            try:
                manifest, tally = self._check(cand, now=started)
            except Rejected as exc:
                self._security(cand.origin, exc.label, exc.message)
            else:
                valid.append((manifest, tally, cand))
        outcome = "no_valid_manifest"
        # Highest version first; a refused one (a held lift, say) must not hide a valid newer halt.
        for manifest, tally, cand in sorted(valid, key=lambda v: v[0].version, reverse=True):
            try:
                outcome = self._offer(manifest, tally, cand, now=started)
            except Rejected as exc:
                self._security(cand.origin, exc.label, exc.message)
                continue
            break
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

    def _check(self, cand: Candidate, *, now: datetime | None) -> tuple[Manifest, Tally]:
        """Everything that makes one document valid on its own. ``now=None`` (a restore) skips
        the time checks."""
        if now is not None and self.trust.expired(now):
            expires = self.trust.expires()
            raise Rejected("root_expired", f"the trust root v{self.trust.version} expired at "
                                           f"{format_time(expires) if expires else '?'}; no manifest can be trusted")
        try:
            tally = self.trust.tally(cand.manifest_bytes, cand.signature)
        except SignatureError as exc:
            raise Rejected(exc.label, str(exc)) from None
        self._note_signatures(cand.origin, tally)
        if not tally.valid:
            raise Rejected("bad_signature", "no signature verifies with a trusted key")
        try:
            manifest = parse_manifest(cand.manifest_bytes)
        except ManifestError as exc:
            raise Rejected(exc.label, str(exc)) from None
        need = self.trust.halt_threshold
        self.last_verification = {"origin": cand.origin, "version": manifest.version, **tally.report(),
                                  "halt_threshold": need, "halt_threshold_met": len(tally.valid) >= need,
                                  "lift_threshold": self.trust.lift_threshold,
                                  "lift_threshold_met": len(tally.valid) >= self.trust.lift_threshold}
        if manifest.key_id is not None and manifest.key_id not in self.trust.manifest_keyids():
            raise Rejected("wrong_key_id", f"manifest names key {manifest.key_id[:16]}…, not a trusted key")
        if manifest.scope != self.scope:
            raise Rejected("wrong_scope", f"manifest is for scope {manifest.scope!r}, not {self.scope!r}")
        if len(tally.valid) < need:
            raise Rejected("below_threshold", f"manifest v{manifest.version} has {len(tally.valid)} valid "
                                              f"signature(s) from distinct trusted keys, needs {need}")
        if now is not None:
            if (manifest.issued_at - now).total_seconds() > MAX_CLOCK_SKEW:
                raise Rejected("issued_in_future", f"manifest v{manifest.version} is issued at "
                                                   f"{format_time(manifest.issued_at)}, ahead of this host's clock")
            if manifest.expired(now):
                raise Rejected("expired", f"manifest v{manifest.version} expired at {format_time(manifest.expires)}")
        return manifest, tally

    def _halts(self, manifest: Manifest) -> bool:
        identity = self.state.enclave_identity
        measurement = identity.measurement if identity is not None else None
        return manifest.halt_reason(self.state.release_version, measurement) is not None

    def _unverified_halt(self, data: bytes) -> str | None:
        """The halt a persisted manifest that no longer verifies would impose (our scope only)."""
        try:
            manifest = parse_manifest(data)
        except ManifestError:
            return None
        if manifest.scope != self.scope:
            return None
        identity = self.state.enclave_identity
        return manifest.halt_reason(self.state.release_version, identity.measurement if identity else None)

    def _lifts(self, cur: Manifest, new: Manifest) -> bool:
        """Would replacing ``cur`` by ``new`` resume signing that ``cur`` halts?"""
        identity = self.state.enclave_identity
        measurement = identity.measurement if identity is not None else None
        release = self.state.release_version
        if cur.halt_reason(release, measurement) is not None and new.halt_reason(release, measurement) is None:
            return True
        # Before the enclave has told us its measurement, dropping a revoked measurement might be
        # lifting ours: treat it as a lift rather than let the halt threshold undo it.
        return measurement is None and bool(set(cur.revoked_measurements) - set(new.revoked_measurements))

    def _check_lift(self, manifest: Manifest, tally: Tally, cand: Candidate, now: datetime) -> None:
        need = self.trust.lift_threshold
        if len(tally.valid) < need:
            raise Rejected("below_lift_threshold", f"manifest v{manifest.version} lifts the halt with "
                                                   f"{len(tally.valid)} valid signature(s), a lift needs {need}")
        timelock = self.trust.lift_timelock_seconds
        if manifest.not_before is None:
            if timelock > 0:
                raise Rejected("lift_without_timelock", f"manifest v{manifest.version} lifts the halt without "
                                                        f"a not_before (the root asks for {timelock} s)")
            return
        if (manifest.not_before - manifest.issued_at).total_seconds() < timelock:
            raise Rejected("lift_timelock_too_short", f"manifest v{manifest.version}: not_before is less than "
                                                      f"{timelock} s after issued_at")
        if now < manifest.not_before:
            self.pending_lift = PendingLift(manifest.version, manifest.not_before, tally.valid, cand.origin)
            raise Rejected("lift_timelocked", f"manifest v{manifest.version} lifts the halt only from "
                                              f"{format_time(manifest.not_before)}; still halted")

    def _offer(self, manifest: Manifest, tally: Tally, cand: Candidate, *, now: datetime) -> str:
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
            if self._lifts(cur, manifest):
                self._check_lift(manifest, tally, cand, now)
        elif self.store_halt is not None and not self._halts(manifest):
            self._check_lift(manifest, tally, cand, now)
        try:
            self.store.save(cand.manifest_bytes, cand.signature, manifest.version, self.trust.version)
        except OSError as exc:
            # Still apply it: a halt must take effect even on a full disk. After a restart the
            # previous record applies again, which can only re-impose a halt, never lift one.
            self.persist_failures_total += 1
            self.log.error("cannot persist revocation manifest v%d: %s", manifest.version, exc)
        self.current, self._current_bytes = manifest, cand.manifest_bytes
        self.signed_by = tally.valid
        self.store_problem = self.store_halt = None
        self.accepted_total += 1
        self.log.warning("accepted revocation manifest v%d from %s (expires %s, revokes %d release(s), "
                         "%d measurement(s), min_version %s, signed by %d key(s))", manifest.version, cand.origin,
                         format_time(manifest.expires), len(manifest.revoked_versions),
                         len(manifest.revoked_measurements), manifest.min_version, len(tally.valid))
        return "accepted"

    def _note_signatures(self, origin: str, tally: Tally) -> None:
        for kid, reason in tally.ignored:
            self.ignored_signatures_total[reason] += 1
            security_log.warning("SECURITY revocation manifest signature ignored: origin=%s key=%s reason=%s",
                                 origin, kid[:16], reason)

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
        now = self.clock()
        if cur is not None:
            # A valid halt is honoured even after its manifest (or the root) expired: only a newer
            # valid manifest lifts it.
            reason = cur.halt_reason(self.state.release_version, measurement)
            if reason is None and cur.expired(now):
                stale = (f"revocation manifest v{cur.version} expired at {format_time(cur.expires)} "
                         "and no newer one could be fetched")
            elif reason is None and self.trust.expired(now):
                expires = self.trust.expires()
                stale = (f"trust root v{self.trust.version} expired at {format_time(expires) if expires else '?'} "
                         "and no newer one could be fetched")
        elif self.store_problem is not None:
            stale = f"revocation state unusable ({self.store_problem}) and no valid manifest fetched since"
            if self.store_halt is not None:
                reason = f"{self.store_halt} (persisted manifest, no longer verifiable)"
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
