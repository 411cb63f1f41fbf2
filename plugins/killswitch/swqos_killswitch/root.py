"""The trust root: who may sign revocation manifests, how many of them a halt and a lift need,
and who may replace the root itself (TUF's root role, cut down to what a kill switch needs).

A root is a JSON document, signed as its exact bytes with a signature bundle
(:mod:`~swqos_killswitch.bundle`) like a manifest::

    {
      "_type": "swqos/root/v1",
      "version": 1,
      "scope": "mainnet-prod",
      "issued_at": "2026-11-01T00:00:00Z",
      "expires": "2027-11-01T00:00:00Z",
      "keys": {"<keyid>": {"public_key": "-----BEGIN PUBLIC KEY-----\\n..."}},
      "root": {"keyids": ["<keyid>", ...], "threshold": 3},
      "manifest": {"keyids": ["<keyid>", ...], "halt_threshold": 2, "lift_threshold": 3,
                   "lift_timelock_seconds": 3600}
    }

Rules, checked by :func:`parse_root` and :func:`check_rotation`:

- every key id is the hex SHA-256 of its key's DER SPKI (so an id cannot name another key), keys
  are ECDSA P-256, a root key is never a manifest key (different people, different storage);
- ``1 <= threshold <= len(keyids)`` for each role, and ``halt_threshold <= lift_threshold``: resuming a
  revoked release must never be easier than stopping it;
- the first root is trusted because the operator pinned its SHA-256 at install; it must also carry
  ``root.threshold`` signatures of its own root keys (proof the ceremony happened);
- root ``N+1`` is trusted only if it carries ``threshold`` valid signatures of root ``N``'s root keys
  *and* ``threshold`` of its own, names the same scope and has not expired: the chain is walked one
  version at a time, so no root is skipped and none can go backwards.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from swqos_killswitch import strict_json
from swqos_killswitch.manifest import MAX_VERSION, SCOPE_RE, ManifestError, format_time, parse_time
from swqos_killswitch.signing import key_id, load_public_key, public_key_pem

ROOT_TYPE = "swqos/root/v1"
MAX_KEYS = 32
#: Longest lift timelock a root may ask for (a halt that nobody can ever lift is an outage).
MAX_LIFT_TIMELOCK = 30 * 24 * 3600


class RootError(ValueError):
    """The document is not a valid root, or does not chain. ``label`` is a short metric label."""

    def __init__(self, message: str, label: str = "invalid_root") -> None:
        super().__init__(message)
        self.label = label


@dataclass(frozen=True)
class Role:
    keyids: tuple[str, ...]
    threshold: int


@dataclass(frozen=True)
class Root:
    version: int
    scope: str
    issued_at: datetime
    expires: datetime
    keys: dict[str, ec.EllipticCurvePublicKey]
    root: Role
    manifest_keyids: tuple[str, ...]
    halt_threshold: int
    lift_threshold: int
    lift_timelock_seconds: int
    #: Hex SHA-256 of the exact bytes: what an operator pins at install.
    sha256: str

    def expired(self, now: datetime) -> bool:
        return now >= self.expires

    def manifest_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        return {k: self.keys[k] for k in self.manifest_keyids}

    def root_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        return {k: self.keys[k] for k in self.root.keyids}

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "scope": self.scope,
            "issued_at": format_time(self.issued_at),
            "expires": format_time(self.expires),
            "sha256": self.sha256,
            "root_keyids": list(self.root.keyids),
            "root_threshold": self.root.threshold,
            "manifest_keyids": list(self.manifest_keyids),
            "halt_threshold": self.halt_threshold,
            "lift_threshold": self.lift_threshold,
            "lift_timelock_seconds": self.lift_timelock_seconds,
        }


def root_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RootError(f"{name} must be an integer between {low} and {high}")
    return value


def _keyids(value: Any, name: str, keys: dict[str, Any]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_KEYS:
        raise RootError(f"{name} must be a non-empty list of at most {MAX_KEYS} key ids")
    if len(set(value)) != len(value):
        raise RootError(f"{name} lists a key twice")
    for kid in value:
        if kid not in keys:
            raise RootError(f"{name}: key {str(kid)[:16]}… is not in keys")
    return tuple(value)


def _exact(obj: Any, name: str, fields: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != fields:
        raise RootError(f"{name} must have exactly: {', '.join(sorted(fields))}")
    return obj


def parse_root(data: bytes) -> Root:
    """Parse the exact signed bytes of a root (signatures are checked elsewhere). Raises RootError."""
    try:
        obj = strict_json.loads(data)
    except strict_json.StrictJsonError as exc:
        raise RootError(f"root: {exc}", "malformed_root") from None
    obj = _exact(obj, "root", {"_type", "version", "scope", "issued_at", "expires", "keys", "root", "manifest"})
    if obj["_type"] != ROOT_TYPE:
        raise RootError(f"_type is not {ROOT_TYPE!r}", "wrong_type")
    version = _int(obj["version"], "version", 1, MAX_VERSION)
    scope = obj["scope"]
    if not isinstance(scope, str) or not SCOPE_RE.match(scope):
        raise RootError("scope must be a short name ([A-Za-z0-9._:/-])")
    try:
        issued_at, expires = parse_time(obj["issued_at"], "issued_at"), parse_time(obj["expires"], "expires")
    except ManifestError as exc:
        raise RootError(str(exc)) from None
    if expires <= issued_at:
        raise RootError("expires must be after issued_at")
    raw_keys = obj["keys"]
    if not isinstance(raw_keys, dict) or not raw_keys or len(raw_keys) > 2 * MAX_KEYS:
        raise RootError(f"keys must be an object of at most {2 * MAX_KEYS} keys")
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for kid, entry in raw_keys.items():
        entry = _exact(entry, f"keys[{kid[:16]}]", {"public_key"})
        if not isinstance(entry["public_key"], str):
            raise RootError(f"keys[{kid[:16]}]: public_key must be a PEM string")
        try:
            key = load_public_key(entry["public_key"].encode())
        except ValueError as exc:
            raise RootError(f"keys[{kid[:16]}]: {exc}") from None
        if key_id(key) != kid:
            raise RootError(f"keys[{kid[:16]}…]: the id is not the SHA-256 of that key's DER SPKI", "wrong_key_id")
        keys[kid] = key
    root_role = _exact(obj["root"], "root", {"keyids", "threshold"})
    root_ids = _keyids(root_role["keyids"], "root.keyids", keys)
    root_threshold = _int(root_role["threshold"], "root.threshold", 1, len(root_ids))
    m = _exact(obj["manifest"], "manifest", {"keyids", "halt_threshold", "lift_threshold", "lift_timelock_seconds"})
    manifest_ids = _keyids(m["keyids"], "manifest.keyids", keys)
    halt = _int(m["halt_threshold"], "manifest.halt_threshold", 1, len(manifest_ids))
    lift = _int(m["lift_threshold"], "manifest.lift_threshold", halt, len(manifest_ids))
    timelock = _int(m["lift_timelock_seconds"], "manifest.lift_timelock_seconds", 0, MAX_LIFT_TIMELOCK)
    both = set(root_ids) & set(manifest_ids)
    if both:
        raise RootError("a root key must not also be a manifest key (separate roles, separate storage)")
    unused = set(keys) - set(root_ids) - set(manifest_ids)
    if unused:
        raise RootError("keys lists a key no role uses")
    return Root(version=version, scope=scope, issued_at=issued_at, expires=expires, keys=keys,
                root=Role(root_ids, root_threshold), manifest_keyids=manifest_ids, halt_threshold=halt,
                lift_threshold=lift, lift_timelock_seconds=timelock, sha256=root_sha256(data))


def build_root(
    *,
    version: int,
    scope: str,
    issued_at: datetime,
    expires: datetime,
    root_keys: list[ec.EllipticCurvePublicKey],
    root_threshold: int,
    manifest_keys: list[ec.EllipticCurvePublicKey],
    halt_threshold: int,
    lift_threshold: int,
    lift_timelock_seconds: int,
) -> bytes:
    """Serialise a root (``swqos manifest root init | rotate``, tests) and check it parses."""
    keys = {key_id(k): {"public_key": public_key_pem(k).decode()} for k in [*root_keys, *manifest_keys]}
    obj = {
        "_type": ROOT_TYPE,
        "version": version,
        "scope": scope,
        "issued_at": format_time(issued_at.astimezone(UTC)),
        "expires": format_time(expires.astimezone(UTC)),
        "keys": dict(sorted(keys.items())),
        "root": {"keyids": [key_id(k) for k in root_keys], "threshold": root_threshold},
        "manifest": {"keyids": [key_id(k) for k in manifest_keys], "halt_threshold": halt_threshold,
                     "lift_threshold": lift_threshold, "lift_timelock_seconds": lift_timelock_seconds},
    }
    data = (json.dumps(obj, indent=2) + "\n").encode()
    parse_root(data)  # never emit what a proxy would refuse
    return data


def check_rotation(old: Root, new: Root) -> None:
    """What makes ``new`` a candidate successor of ``old``, signatures aside. Raises RootError."""
    if new.version <= old.version:
        raise RootError(f"root v{new.version} is not newer than the trusted v{old.version}", "root_rollback")
    if new.version != old.version + 1:
        raise RootError(f"root v{new.version} skips v{old.version + 1}", "root_gap")
    if new.scope != old.scope:
        raise RootError(f"root v{new.version} is for scope {new.scope!r}, not {old.scope!r}", "wrong_scope")
    if new.issued_at < old.issued_at:
        raise RootError(f"root v{new.version} was issued before v{old.version}", "root_rollback")
