"""Whose signatures count, and how many a manifest needs.

Two kinds of trust, one interface for the engine:

- :class:`SingleKeyTrust`: the one pinned key of a proxy without a trust root (threshold 1 for a
  halt and a lift, no timelock): how every manifest worked before roots, and still works until
  the operator installs one.
- :class:`RootTrust`: a chain of signed roots starting at the one pinned by its SHA-256 at install
  (:mod:`~swqos_killswitch.root`); the newest root's manifest keys and thresholds apply.

:func:`tally` counts distinct valid signers and reports every signature it ignored, with why:
``duplicate_signer`` (counted once), ``unknown_key`` (not in the root), ``rotated_out_key`` (was in
an earlier root of the chain, not in the current one), ``wrong_role`` (a root key signing a manifest,
or a manifest key signing a root), ``bad_signature`` (a listed key whose signature does not verify).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from swqos_killswitch.bundle import parse_signatures
from swqos_killswitch.manifest import format_time
from swqos_killswitch.root import Root, RootError, check_rotation, parse_root, root_sha256
from swqos_killswitch.signing import PinnedKey

#: Most root versions a chain may hold (a rotation a week for decades); bounds state and work.
MAX_CHAIN = 1024


@dataclass(frozen=True)
class Tally:
    """The outcome of counting one document's signatures."""

    #: Distinct key ids whose signature verifies, in bundle order.
    valid: tuple[str, ...]
    #: (key id, or "-" for a bare signature, reason) for each signature that did not count.
    ignored: tuple[tuple[str, str], ...] = ()

    def report(self) -> dict[str, Any]:
        return {"signed_by": list(self.valid), "ignored": [{"keyid": k, "reason": r} for k, r in self.ignored]}


def _verifies(key: ec.EllipticCurvePublicKey, der: bytes, data: bytes) -> bool:
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def tally(data: bytes, sig_file: bytes, keys: Mapping[str, ec.EllipticCurvePublicKey], *,
          former: Iterable[str] = (), other_role: Iterable[str] = ()) -> Tally:
    """Count the distinct keys of ``keys`` that signed ``data``. Raises SignatureError for a
    malformed or oversize signature file (the whole file is then refused)."""
    former, other_role = set(former), set(other_role)
    valid: list[str] = []
    ignored: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in parse_signatures(sig_file, data):
        if entry.keyid is None:  # a bare cosign signature names no key: try each trusted one
            kid = next((k for k, key in keys.items() if _verifies(key, entry.der, data)), None)
            if kid is None:
                ignored.append(("-", "bad_signature"))
            elif kid in seen:
                ignored.append((kid, "duplicate_signer"))
            else:
                seen.add(kid)
                valid.append(kid)
            continue
        kid = entry.keyid
        if kid in seen:
            ignored.append((kid, "duplicate_signer"))
            continue
        seen.add(kid)
        key = keys.get(kid)
        if key is None:
            reason = "wrong_role" if kid in other_role else (
                "rotated_out_key" if kid in former else "unknown_key")
            ignored.append((kid, reason))
        elif _verifies(key, entry.der, data):
            valid.append(kid)
        else:
            ignored.append((kid, "bad_signature"))
    return Tally(tuple(valid), tuple(ignored))


class SingleKeyTrust:
    """One pinned key: threshold 1 for everything, no timelock (the behaviour before roots)."""

    mode = "single_key"
    halt_threshold = 1
    lift_threshold = 1
    lift_timelock_seconds = 0

    def __init__(self, pinned: PinnedKey) -> None:
        self.pinned = pinned

    @property
    def version(self) -> int | None:
        return None

    def manifest_keyids(self) -> tuple[str, ...]:
        return (self.pinned.key_id,)

    def tally(self, data: bytes, sig_file: bytes) -> Tally:
        return tally(data, sig_file, {self.pinned.key_id: self.pinned.key})

    def expired(self, now: datetime) -> bool:
        return False

    def expires(self) -> datetime | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "key_id": self.pinned.key_id, "halt_threshold": 1, "lift_threshold": 1,
                "lift_timelock_seconds": 0}


@dataclass
class ChainLink:
    root: Root
    data: bytes
    signature: bytes


def verify_root_signatures(root: Root, data: bytes, sig_file: bytes, signers: Root, label: str) -> Tally:
    """``signers``' root keys must reach their threshold over ``data``. Raises RootError(label)."""
    t = tally(data, sig_file, signers.root_keys(), other_role=signers.manifest_keyids)
    if len(t.valid) < signers.root.threshold:
        raise RootError(f"root v{root.version} has {len(t.valid)} valid signature(s) of root v{signers.version}'s "
                        f"keys, needs {signers.root.threshold}", label)
    return t


def verify_first_root(data: bytes, sig_file: bytes, pinned_sha256: str) -> ChainLink:
    """The root pinned at install: its hash must match the pin and it must carry its own threshold."""
    want = pinned_sha256.strip().lower()
    if not hmac.compare_digest(root_sha256(data), want):
        raise RootError(f"root has SHA-256 {root_sha256(data)}, but config pins {want}", "root_pin_mismatch")
    root = parse_root(data)
    verify_root_signatures(root, data, sig_file, root, "root_below_threshold")
    return ChainLink(root, data, sig_file)


def verify_next_root(current: Root, data: bytes, sig_file: bytes, *, now: datetime | None) -> ChainLink:
    """Root ``current.version + 1``: signed by a threshold of the old root keys and of its own."""
    new = parse_root(data)
    check_rotation(current, new)
    if now is not None and new.expired(now):
        raise RootError(f"root v{new.version} expired at {format_time(new.expires)}", "root_expired")
    verify_root_signatures(new, data, sig_file, current, "root_below_threshold")
    verify_root_signatures(new, data, sig_file, new, "root_below_threshold")
    return ChainLink(new, data, sig_file)


@dataclass
class RootTrust:
    """A verified chain of roots; the last one decides."""

    chain: list[ChainLink] = field(default_factory=list)
    mode = "root"

    @property
    def current(self) -> Root:
        return self.chain[-1].root

    @property
    def version(self) -> int:
        return self.current.version

    @property
    def halt_threshold(self) -> int:
        return self.current.halt_threshold

    @property
    def lift_threshold(self) -> int:
        return self.current.lift_threshold

    @property
    def lift_timelock_seconds(self) -> int:
        return self.current.lift_timelock_seconds

    def manifest_keyids(self) -> tuple[str, ...]:
        return self.current.manifest_keyids

    def tally(self, data: bytes, sig_file: bytes) -> Tally:
        """Signatures by the manifest keys of the current root. Always the current one, for a
        persisted record too: keys an earlier root trusted may be the stolen ones it rotated out."""
        root = self.current
        former = {k for link in self.chain for k in link.root.manifest_keyids} - set(root.manifest_keyids)
        return tally(data, sig_file, root.manifest_keys(), former=former, other_role=root.root.keyids)

    def extend(self, data: bytes, sig_file: bytes, now: datetime | None) -> Root:
        """Verify and append the next root. Raises RootError (the chain is unchanged)."""
        if len(self.chain) >= MAX_CHAIN:
            raise RootError(f"the root chain already holds {MAX_CHAIN} versions", "root_chain_full")
        link = verify_next_root(self.current, data, sig_file, now=now)
        self.chain.append(link)
        return link.root

    def expired(self, now: datetime) -> bool:
        return self.current.expired(now)

    def expires(self) -> datetime | None:
        return self.current.expires

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, **self.current.summary(), "chain_length": len(self.chain)}


Trust = SingleKeyTrust | RootTrust
