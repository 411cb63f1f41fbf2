"""The revocation manifest: format, strict parser, and what it says about one release.

A manifest is a JSON object, signed as the exact bytes published (docs/kill-switch.md)::

    {
      "_type": "swqos/revocation-manifest/v1",
      "version": 7,
      "scope": "mainnet-prod",
      "key_id": "<hex sha256 of the signing key's DER SPKI>",          (optional)
      "issued_at": "2026-04-21T12:00:00Z",
      "expires": "2026-04-21T18:00:00Z",
      "action": "halt",
      "revoked_versions": ["1.3.1"],
      "revoked_measurements": ["<96 hex digits: PCR0 of a revoked enclave image>"],
      "min_version": "1.3.2",                                          (optional)
      "not_before": "2026-04-21T18:00:00Z",                            (optional: a lift's timelock)
      "revoked_at": "2026-04-21T12:00:00Z",                            (optional, audit only)
      "reason": "CVE-2026-0001: payload matcher bypass"                (optional)
    }

The parser is deliberately unforgiving: unknown keys, duplicate keys, NaN, wrong types and
out-of-range values are all refusals. A field this version of swqos does not understand
could be a revocation it would silently ignore, so "v1 does not know it" means "invalid".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from swqos_killswitch import strict_json

MANIFEST_TYPE = "swqos/revocation-manifest/v1"
#: JSON integers above this lose precision in many producers (JavaScript); refuse them.
MAX_VERSION = 2**53 - 1
MAX_LIST = 1024
MAX_STRING = 256
_TIME_RE = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_PCR_RE = re.compile(r"\A[0-9a-fA-F]{96}\Z")
_KEY_ID_RE = re.compile(r"\A[0-9a-f]{64}\Z")
SCOPE_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}\Z")

_REQUIRED = {"_type", "version", "scope", "issued_at", "expires", "action", "revoked_versions", "revoked_measurements"}
_OPTIONAL = {"key_id", "min_version", "revoked_at", "reason", "not_before"}


class ManifestError(ValueError):
    """The document is not a valid v1 manifest. ``label`` is a short metric label."""

    def __init__(self, message: str, label: str = "invalid_field") -> None:
        super().__init__(message)
        self.label = label


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, name: str) -> datetime:
    """TUF's timestamp form, UTC only: ``YYYY-MM-DDTHH:MM:SSZ``."""
    if not isinstance(value, str) or not _TIME_RE.match(value):
        raise ManifestError(f"{name} must be a UTC time like 2026-04-21T12:00:00Z")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ManifestError(f"{name} is not a valid time") from None


@dataclass(frozen=True)
class Manifest:
    version: int
    scope: str
    issued_at: datetime
    expires: datetime
    action: str
    revoked_versions: tuple[str, ...]
    revoked_measurements: tuple[str, ...]  # lower-case hex
    min_version: str | None = None
    key_id: str | None = None
    revoked_at: str | None = None
    reason: str | None = None
    #: A lift carried by this manifest takes effect only from this time on (the lift timelock).
    not_before: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return now >= self.expires

    def halt_reason(self, release_version: str, measurement: str | None) -> str | None:
        """Why this manifest revokes ``release_version`` / ``measurement``, or None."""
        suffix = f" (manifest v{self.version}" + (f": {self.reason})" if self.reason else ")")
        if release_version in self.revoked_versions:
            return f"release {release_version} is revoked" + suffix
        if measurement is not None and measurement.lower() in self.revoked_measurements:
            return f"enclave measurement {measurement.lower()[:16]}… is revoked" + suffix
        if self.min_version is not None:
            below = version_below(release_version, self.min_version)
            if below is None:
                # Cannot tell: the release string does not compare. Refuse rather than guess.
                return f"release {release_version} cannot be compared with minimum {self.min_version}" + suffix
            if below:
                return f"release {release_version} is below the minimum {self.min_version}" + suffix
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "scope": self.scope,
            "issued_at": format_time(self.issued_at),
            "expires": format_time(self.expires),
            "action": self.action,
            "revoked_versions": list(self.revoked_versions),
            "revoked_measurements": list(self.revoked_measurements),
            "min_version": self.min_version,
            "key_id": self.key_id,
            "revoked_at": self.revoked_at,
            "reason": self.reason,
            "not_before": format_time(self.not_before) if self.not_before else None,
        }


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_STRING or not value.isprintable():
        raise ManifestError(f"{name} must be a non-empty printable string of at most {MAX_STRING} characters")
    return value


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise ManifestError(f"{name} must be a list of at most {MAX_LIST} strings")
    return [_string(v, f"{name}[{i}]") for i, v in enumerate(value)]


def parse_manifest(data: bytes) -> Manifest:
    """Parse the exact signed bytes. Raises :class:`ManifestError`."""
    try:
        obj = strict_json.loads(data)
    except strict_json.StrictJsonError as exc:
        raise ManifestError(f"manifest: {exc}", "malformed") from None
    if not isinstance(obj, dict):
        raise ManifestError("manifest is not a JSON object", "malformed")
    if obj.get("_type") != MANIFEST_TYPE:
        raise ManifestError(f"_type is not {MANIFEST_TYPE!r}", "wrong_type")
    missing = _REQUIRED - obj.keys()
    if missing:
        raise ManifestError(f"missing keys: {', '.join(sorted(missing))}")
    unknown = obj.keys() - _REQUIRED - _OPTIONAL
    if unknown:
        raise ManifestError(f"unknown keys: {', '.join(sorted(unknown))}")

    version = obj["version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise ManifestError(f"version must be an integer between 1 and {MAX_VERSION}")
    scope = obj["scope"]
    if not isinstance(scope, str) or not SCOPE_RE.match(scope):
        raise ManifestError("scope must be a short name ([A-Za-z0-9._:/-])")
    issued_at = parse_time(obj["issued_at"], "issued_at")
    expires = parse_time(obj["expires"], "expires")
    if expires <= issued_at:
        raise ManifestError("expires must be after issued_at")
    if obj["action"] != "halt":
        raise ManifestError('action must be "halt"')
    revoked_versions = _string_list(obj["revoked_versions"], "revoked_versions")
    measurements = obj["revoked_measurements"]
    if not isinstance(measurements, list) or len(measurements) > MAX_LIST:
        raise ManifestError(f"revoked_measurements must be a list of at most {MAX_LIST} PCR0 values")
    for i, m in enumerate(measurements):
        if not isinstance(m, str) or not _PCR_RE.match(m):
            raise ManifestError(f"revoked_measurements[{i}] must be 96 hex digits (a SHA-384 PCR0)")
    min_version = obj.get("min_version")
    if min_version is not None:
        min_version = _string(min_version, "min_version")
        if _parse_version(min_version) is None:
            raise ManifestError("min_version must look like 1.2.3 (optionally with a pre-release suffix)")
    key_id = obj.get("key_id")
    if key_id is not None and (not isinstance(key_id, str) or not _KEY_ID_RE.match(key_id)):
        raise ManifestError("key_id must be 64 lower-case hex digits")
    revoked_at = obj.get("revoked_at")
    if revoked_at is not None:
        parse_time(revoked_at, "revoked_at")
    reason = obj.get("reason")
    if reason is not None:
        reason = _string(reason, "reason")
    not_before = obj.get("not_before")
    if not_before is not None:
        not_before = parse_time(not_before, "not_before")
        if not issued_at <= not_before < expires:
            raise ManifestError("not_before must be between issued_at and expires")
    return Manifest(
        version=version,
        scope=scope,
        issued_at=issued_at,
        expires=expires,
        action="halt",
        revoked_versions=tuple(revoked_versions),
        revoked_measurements=tuple(m.lower() for m in measurements),
        min_version=min_version,
        key_id=key_id,
        revoked_at=revoked_at,
        reason=reason,
        not_before=not_before,
    )


def build_manifest(
    *,
    version: int,
    scope: str,
    issued_at: datetime,
    expires: datetime,
    revoked_versions: list[str] = (),  # type: ignore[assignment]
    revoked_measurements: list[str] = (),  # type: ignore[assignment]
    min_version: str | None = None,
    key_id: str | None = None,
    revoked_at: datetime | None = None,
    reason: str | None = None,
    not_before: datetime | None = None,
) -> bytes:
    """Serialise a manifest (for ``swqos manifest sign`` and tests) and check it parses."""
    obj: dict[str, Any] = {
        "_type": MANIFEST_TYPE,
        "version": version,
        "scope": scope,
        "issued_at": format_time(issued_at),
        "expires": format_time(expires),
        "action": "halt",
        "revoked_versions": list(revoked_versions),
        "revoked_measurements": [m.lower() for m in revoked_measurements],
    }
    if key_id is not None:
        obj["key_id"] = key_id
    if min_version is not None:
        obj["min_version"] = min_version
    if revoked_at is not None:
        obj["revoked_at"] = format_time(revoked_at)
    if reason is not None:
        obj["reason"] = reason
    if not_before is not None:
        obj["not_before"] = format_time(not_before)
    data = (json.dumps(obj, indent=2, ensure_ascii=True) + "\n").encode()
    parse_manifest(data)  # a builder must never emit what the verifier would refuse
    return data


# --- release version ordering --------------------------------------------------------------

_VERSION_RE = re.compile(r"\A(\d+(?:\.\d+)*)(?:[-.]?(a|b|rc|alpha|beta|dev)\.?(\d*))?\Z")
_PRE_ORDER = {"dev": 0, "a": 1, "alpha": 1, "b": 2, "beta": 2, "rc": 3}


def _parse_version(text: str) -> tuple[tuple[int, ...], tuple[int, int]] | None:
    m = _VERSION_RE.match(text.strip().lower())
    if not m:
        return None
    release = tuple(int(p) for p in m.group(1).split("."))
    while len(release) > 1 and release[-1] == 0:  # 1.2 == 1.2.0
        release = release[:-1]
    if m.group(2):
        pre = (_PRE_ORDER[m.group(2)], int(m.group(3) or 0))
    else:
        pre = (99, 0)  # a final release sorts after all its pre-releases
    return release, pre


def version_below(version: str, minimum: str) -> bool | None:
    """True if ``version`` < ``minimum``; None if either does not parse (caller fails closed)."""
    a, b = _parse_version(version), _parse_version(minimum)
    if a is None or b is None:
        return None
    return a < b
