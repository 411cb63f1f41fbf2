"""API tokens: 32 random bytes shown once, stored only as Argon2id hashes, looked up by token id.

Format: ``swqat_<id: 16 hex>_<secret: 43 base64url chars = 32 bytes>``. The id is not secret (it
is listed by ``swqos token list`` and lets the verifier find the one hash to check, so an unknown
id costs nothing); the secret is. The whole token string is the Argon2id input.

Argon2id parameters: m = 19 MiB, t = 2, p = 1 (the OWASP minimum). Measured here (2-vCPU VM):
~20 ms per verify. A 256-bit random secret gains nothing from a slower hash (an offline search of
2**256 is out of reach at any speed); the hash is slow only because policy asks for Argon2id, so
the cost that matters is the DoS one: verification runs in a thread, at most
``max_concurrent_verifications`` at a time (2 x 19 MiB), after the per-IP limits and the
brute-force guard, and a success is cached under an HMAC of the token with a per-process key so
the steady state costs microseconds.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from swqos_auth_jwt.bruteforce import BruteForceGuard, BruteForceSettings
from swqos_auth_jwt.cache import ExpiringCache
from swqos_auth_jwt.strict import StrictDecodeError, b64url_decode, b64url_encode, json_object
from swqos_auth_jwt.watched import WatchedJson
from swqos_core.errors import ConfigError, Rejection, permission_denied, resource_exhausted, unauthenticated
from swqos_core.files import write_atomic
from swqos_core.layers import ClientAddress, Principal, RequestHead

log = logging.getLogger("swqos.auth.api_token")

API_TOKEN_PREFIX = "swqat_"  # noqa: S105 (a format marker, not a secret)
TOKEN_RE = re.compile(r"swqat_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
TokenRole = Literal["trader", "admin"]

#: Parameters for new hashes (see the module docstring for the measurement and the reasons).
ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19_456
ARGON2_PARALLELISM = 1
#: Refuse to load hashes asking for more than this: a tampered store must not become a memory bomb.
ARGON2_MAX_MEMORY_KIB = 65_536
ARGON2_MAX_TIME_COST = 4


def password_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
                          parallelism=ARGON2_PARALLELISM, hash_len=32, salt_len=16, type=Type.ID)


# --- the store file ----------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    role: TokenRole
    hash: str
    created_at: int
    expires_at: int | None = None
    revoked: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "hash": self.hash, "created_at": self.created_at,
                "expires_at": self.expires_at, "revoked": self.revoked}


def parse_store(doc: dict[str, Any]) -> dict[str, TokenRecord]:
    """``{"version": 1, "tokens": {"<id>": {name, role, hash, created_at, expires_at, revoked}}}``."""
    if doc.get("version") != 1 or not isinstance(doc.get("tokens"), dict):
        raise ValueError("not a version 1 token store")
    out = {}
    for tid, rec in doc["tokens"].items():
        if not re.fullmatch(r"[0-9a-f]{16}", tid) or not isinstance(rec, dict):
            raise ValueError("malformed token id in store")
        name, role, h = rec.get("name"), rec.get("role"), rec.get("hash")
        exp, revoked, created = rec.get("expires_at"), rec.get("revoked", False), rec.get("created_at", 0)
        if not isinstance(name, str) or role not in ("trader", "admin") or not isinstance(h, str):
            raise ValueError(f"token {tid}: bad name, role or hash")
        if not (exp is None or isinstance(exp, int)) or not isinstance(revoked, bool) or not isinstance(created, int):
            raise ValueError(f"token {tid}: bad expires_at, revoked or created_at")
        try:
            p = extract_parameters(h)
        except InvalidHashError:
            raise ValueError(f"token {tid}: not an Argon2 hash") from None
        if p.type is not Type.ID or p.memory_cost > ARGON2_MAX_MEMORY_KIB or p.time_cost > ARGON2_MAX_TIME_COST:
            raise ValueError(f"token {tid}: hash must be Argon2id within m<={ARGON2_MAX_MEMORY_KIB} KiB, "
                             f"t<={ARGON2_MAX_TIME_COST}")
        out[tid] = TokenRecord(tid, name, role, h, created, exp, revoked)
    return out


def read_store(path: Path) -> dict[str, TokenRecord]:
    if not path.exists():
        return {}
    return parse_store(json_object(path.read_bytes()))


def write_store(path: Path, records: dict[str, TokenRecord]) -> None:
    """Atomically replace the store: a 0600 temp file in the same directory, fsync, rename."""
    doc = {"version": 1, "tokens": {tid: r.to_json() for tid, r in sorted(records.items())}}
    data = (json.dumps(doc, indent=2) + "\n").encode()
    write_atomic(path, data, mode=0o600)


def new_token() -> tuple[str, str]:
    """Return ``(token_id, token)``."""
    tid = secrets.token_hex(8)
    return tid, f"{API_TOKEN_PREFIX}{tid}_{b64url_encode(secrets.token_bytes(32))}"


def create_token(path: Path, name: str, role: TokenRole = "trader", ttl: int | None = None) -> tuple[str, TokenRecord]:
    """Add a token to the store; returns the token (to show once) and its record."""
    if not name or len(name) > 128:
        raise ValueError("name must be 1-128 characters")
    if role not in ("trader", "admin"):
        raise ValueError("role must be trader or admin")
    records = read_store(path)
    tid, token = new_token()
    now = int(time.time())
    rec = TokenRecord(tid, name, role, password_hasher().hash(token), now, now + ttl if ttl else None)
    records[tid] = rec
    write_store(path, records)
    return token, rec


def revoke_token(path: Path, token_id_or_name: str) -> list[str]:
    """Mark tokens revoked by id or by name; returns the ids revoked."""
    records = read_store(path)
    hit = [tid for tid, r in records.items() if token_id_or_name in (tid, r.name) and not r.revoked]
    for tid in hit:
        r = records[tid]
        records[tid] = TokenRecord(r.id, r.name, r.role, r.hash, r.created_at, r.expires_at, True)
    if hit:
        write_store(path, records)
    return hit


# --- the authenticator -------------------------------------------------------------------


@dataclass
class ApiTokenSettings:
    #: The token store written by ``swqos token create`` (JSON, 0600), re-read when it changes.
    store: Path
    #: Token roles this authenticator accepts here; others get PERMISSION_DENIED.
    accept_roles: list[TokenRole] = field(default_factory=lambda: ["admin"])
    #: Argon2id verifications running at once (each ~19 MiB, ~20 ms of one core).
    max_concurrent_verifications: int = 2
    #: Verifications allowed to wait for a slot; beyond that RESOURCE_EXHAUSTED.
    max_waiting_verifications: int = 8
    #: Successful verifications remembered (by HMAC of the token) ...
    cache_size: int = 1024
    #: ... for this long (revocation is still checked on every request).
    cache_ttl_seconds: float = 300.0
    reload_interval_seconds: float = 1.0
    brute_force: BruteForceSettings = field(default_factory=BruteForceSettings)

    def __post_init__(self) -> None:
        if not self.accept_roles or any(r not in ("trader", "admin") for r in self.accept_roles):
            raise ValueError("accept_roles must list trader and/or admin")
        if self.max_concurrent_verifications < 1 or self.max_waiting_verifications < 0:
            raise ValueError("max_concurrent_verifications >= 1 and max_waiting_verifications >= 0")
        if self.cache_ttl_seconds <= 0 or self.reload_interval_seconds <= 0:
            raise ValueError("cache_ttl_seconds and reload_interval_seconds must be positive")


@dataclass(frozen=True, slots=True)
class _Hit:
    token_id: str
    hash: str  # the record's hash when verified: a re-created record invalidates the hit


class ApiTokenAuthenticator:
    name = "api_token"

    def __init__(self, settings: ApiTokenSettings, *, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.s = settings
        self.log = logger or log
        self.clock = clock
        self.monotonic = monotonic
        if not settings.store.exists():
            raise ConfigError(f"api token store {settings.store} does not exist (create it with swqos token create)")
        if settings.store.stat().st_mode & 0o077:
            self.log.warning("api token store %s is readable by group or others; chmod 600 it", settings.store)
        self._store = WatchedJson(settings.store, parse_store, interval=settings.reload_interval_seconds,
                                  monotonic=monotonic, logger=self.log)
        self._hasher = password_hasher()
        self._hmac_key = secrets.token_bytes(32)  # per process: cache keys mean nothing elsewhere
        self.cache: ExpiringCache[_Hit] = ExpiringCache(settings.cache_size)
        self.guard = BruteForceGuard(settings.brute_force, monotonic=monotonic, name="api_token")
        self._limiter: anyio.CapacityLimiter | None = None
        self._pending = 0

    async def authenticate(self, head: RequestHead, client: ClientAddress) -> Principal | None:
        values = head.header_values("authorization")
        if not any(v.startswith("Bearer " + API_TOKEN_PREFIX) for v in values):
            return None
        bucket = client.key
        self.guard.check(bucket)
        try:
            principal = await self._check(values)
        except Rejection as exc:
            if exc.label != "api_token_busy":  # our own overload is not the caller's failure
                self.guard.failure(bucket)
            raise
        except Exception:
            self.guard.failure(bucket)
            self.log.exception("api token verification raised unexpectedly")
            raise unauthenticated("api token: credential could not be verified", label="error") from None
        self.guard.success(bucket)
        return principal

    async def _check(self, values: list[str]) -> Principal:
        if len(values) != 1:
            raise unauthenticated("api token: exactly one authorization header is allowed", label="api_token_envelope")
        token = values[0][len("Bearer "):]
        m = TOKEN_RE.fullmatch(token)
        if m is None:
            raise unauthenticated("api token: malformed", label="api_token_malformed")
        self._store.refresh()
        tid = m.group(1)
        rec = self._store.value.get(tid)
        now = self.clock()
        # Unknown, revoked and expired tokens are refused before any hashing: checked every request.
        if rec is None or rec.revoked or (rec.expires_at is not None and now >= rec.expires_at):
            raise unauthenticated("api token: unknown, revoked or expired", label="api_token_unknown")
        ckey = hmac.digest(self._hmac_key, token.encode(), "sha256")
        hit = self.cache.get(ckey, now)
        if hit is None or hit.token_id != tid or hit.hash != rec.hash:
            try:  # one spelling per secret: refuse non-canonical base64url before paying for Argon2
                b64url_decode(m.group(2))
            except StrictDecodeError:
                raise unauthenticated("api token: malformed", label="api_token_malformed") from None
            if not await self._verify_hash(rec.hash, token):
                raise unauthenticated("api token: invalid", label="api_token_invalid")
            until = now + self.s.cache_ttl_seconds
            if rec.expires_at is not None:
                until = min(until, float(rec.expires_at))
            self.cache.put(ckey, _Hit(tid, rec.hash), until, now)
        if rec.role not in self.s.accept_roles:
            raise permission_denied("api token: role not accepted here", label="api_token_role")
        return Principal(rec.name, rec.role, self.name, tid, float(rec.expires_at) if rec.expires_at else None)

    async def _verify_hash(self, stored: str, token: str) -> bool:
        cap = self.s.max_concurrent_verifications
        if self._pending >= cap + self.s.max_waiting_verifications:
            raise resource_exhausted("api token verification busy", retry_after=0.1, label="api_token_busy")
        if self._limiter is None:  # created lazily: it must belong to the running event loop
            self._limiter = anyio.CapacityLimiter(cap)
        self._pending += 1
        try:
            return await anyio.to_thread.run_sync(self._verify_sync, stored, token, limiter=self._limiter)
        finally:
            self._pending -= 1

    def _verify_sync(self, stored: str, token: str) -> bool:
        # argon2-cffi releases the GIL, so this does not stall the event loop's thread.
        try:
            return self._hasher.verify(stored, token)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    # --- runtime view (admin API) ---------------------------------------------------------

    def state(self) -> dict[str, Any]:
        self._store.refresh(force=True)
        return {
            "tokens": [{"id": r.id, "name": r.name, "role": r.role, "created_at": r.created_at,
                        "expires_at": r.expires_at, "revoked": r.revoked} for r in self._store.value.values()],
            "cache_entries": len(self.cache),
            "brute_force": self.guard.snapshot(),
        }
