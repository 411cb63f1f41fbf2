"""API tokens: 32 random bytes shown once, stored only as Argon2id hashes, looked up by token id.

Format: ``swqat_<id: 16 hex>_<secret: 43 base64url chars = 32 bytes>``. The id is not secret (it
is listed by ``swqos token list`` and lets the verifier find the one hash to check, so an unknown
id costs nothing); the secret is. The whole token string is the Argon2id input.

Argon2id parameters: m = 19 MiB, t = 2, p = 1 (the OWASP minimum). Measured here (2-vCPU VM):
~20 ms per verify. A 256-bit random secret gains nothing from a slower hash (an offline search of
2**256 is out of reach at any speed); the hash is slow only because policy asks for Argon2id, so
the cost that matters is the DoS one: verification runs on a fixed pool of
``max_concurrent_verifications`` threads behind a bounded queue (:mod:`swqos_auth_jwt.argon2_pool`),
after the per-IP limits and the brute-force guard (per address bucket and per token id), and a
success is cached under an HMAC of the token with a per-process key so the steady state costs
microseconds.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from swqos_auth_jwt.argon2_pool import VerifierPool, return_large_allocations
from swqos_auth_jwt.bruteforce import BruteForceGuard, BruteForceSettings
from swqos_auth_jwt.cache import ExpiringCache
from swqos_auth_jwt.strict import StrictDecodeError, b64url_decode, b64url_encode, json_object
from swqos_auth_jwt.watched import WatchedJson
from swqos_core.errors import ConfigError, Rejection, permission_denied, resource_exhausted, unauthenticated
from swqos_core.files import write_atomic
from swqos_core.layers import ClientAddress, Principal, RequestHead
from swqos_core.store import StateStore

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
    #: Argon2id verifier threads: a fixed pool, so at most this many buffers of 19 MiB (one per core).
    max_concurrent_verifications: int = 2
    #: Verifications allowed to wait for a thread; beyond that RESOURCE_EXHAUSTED at once.
    max_waiting_verifications: int = 4
    #: Refuse at once (RESOURCE_EXHAUSTED) when the estimated wait for a thread is longer than this:
    #: well inside the default 100 ms call deadline, so a refused caller still has time to hear why.
    max_queue_wait_seconds: float = 0.05
    #: Pin glibc's mmap threshold (4 MiB) so each Argon2 buffer is unmapped after use (process-wide).
    return_memory: bool = True
    #: While a token id is under attack (its own failure count is in backoff or banned), Argon2
    #: runs for it at most this often for addresses that never authenticated with it ...
    under_attack_verifications_per_second: float = 1.0
    #: ... while the last this-many address buckets that did (the holder) keep their own budget.
    known_addresses_per_token: int = 8
    #: Token ids whose attack state and known addresses are remembered (least recently used dropped).
    max_tracked_token_ids: int = 10_000
    #: Successful verifications remembered (by HMAC of the token) ...
    cache_size: int = 1024
    #: ... for this long (revocation is still checked on every request).
    cache_ttl_seconds: float = 300.0
    reload_interval_seconds: float = 1.0
    brute_force: BruteForceSettings = field(default_factory=BruteForceSettings)

    def __post_init__(self) -> None:
        if not self.accept_roles or any(r not in ("trader", "admin") for r in self.accept_roles):
            raise ValueError("accept_roles must list trader and/or admin")
        if not 1 <= self.max_concurrent_verifications <= 64 or self.max_waiting_verifications < 0:
            raise ValueError("max_concurrent_verifications 1..64 and max_waiting_verifications >= 0")
        if self.max_queue_wait_seconds < 0:
            raise ValueError("max_queue_wait_seconds must be >= 0")
        if self.under_attack_verifications_per_second <= 0:
            raise ValueError("under_attack_verifications_per_second must be positive")
        if self.known_addresses_per_token < 0 or self.max_tracked_token_ids < 1:
            raise ValueError("known_addresses_per_token >= 0 and max_tracked_token_ids >= 1")
        if self.cache_ttl_seconds <= 0 or self.reload_interval_seconds <= 0:
            raise ValueError("cache_ttl_seconds and reload_interval_seconds must be positive")


@dataclass(frozen=True, slots=True)
class _Hit:
    token_id: str
    hash: str  # the record's hash when verified: a re-created record invalidates the hit


class _TokenIdState:
    """Per token id: the address buckets that proved the secret, and the strangers' allowance."""

    __slots__ = ("allowance", "known", "stamp")

    def __init__(self, now: float) -> None:
        self.known: collections.OrderedDict[Hashable, None] = collections.OrderedDict()
        self.allowance = 1.0
        self.stamp = now


#: Refusals that are about load, not about the caller's credential: not counted as its failures.
NOT_CALLER_FAILURES = frozenset({"api_token_busy", "api_token_id_throttled"})


def id_key(token_id: str) -> tuple[str, str]:
    """The brute-force guard's key for failures against one token id (not an address bucket)."""
    return ("token", token_id)


class ApiTokenAuthenticator:
    """Layer 4 authenticator for ``authorization: Bearer swqat_<id>_<secret>``.

    Failures are counted per client address bucket and per token id. An address in backoff or
    banned is refused before anything else (as for the jwt authenticator). A token id under attack
    is never refused outright, because its id is public and its holder must not be locked out by
    anyone else's failures: a success remembered in the cache costs no Argon2 at all, an address
    bucket that authenticated with the id before keeps its own (per-address) budget, and only
    addresses new to the id share ``under_attack_verifications_per_second`` Argon2 runs; the rest
    get RESOURCE_EXHAUSTED with ``retry-after``, before any hashing.
    """

    name = "api_token"

    def __init__(self, settings: ApiTokenSettings, *, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 store: StateStore | None = None) -> None:
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
        self.guard = BruteForceGuard(settings.brute_force, monotonic=monotonic, name="api_token", store=store)
        if settings.return_memory:
            return_large_allocations()
        self.pool = VerifierPool(settings.max_concurrent_verifications, settings.max_waiting_verifications,
                                 settings.max_queue_wait_seconds, name="argon2")
        self._ids: collections.OrderedDict[str, _TokenIdState] = collections.OrderedDict()
        #: Requests refused because their token id was under attack (metric-worthy).
        self.refused_id_throttled = 0
        #: Argon2 runs admitted for an address already known to the token id while it was under attack.
        self.admitted_known_address = 0
        #: Verdicts of verifications that finished after their call's deadline (still counted).
        self.late_verdicts = 0

    async def authenticate(self, head: RequestHead, client: ClientAddress) -> Principal | None:
        values = head.header_values("authorization")
        if not any(v.startswith("Bearer " + API_TOKEN_PREFIX) for v in values):
            return None
        bucket = client.key
        blocked = self.guard.verdict(bucket)
        try:
            principal = await self._check(values, bucket, blocked)
        except Rejection as exc:
            if exc.label not in NOT_CALLER_FAILURES and exc is not blocked:
                self.guard.failure(bucket)
            raise
        except Exception:
            self.guard.failure(bucket)
            self.log.exception("api token verification raised unexpectedly")
            raise unauthenticated("api token: credential could not be verified", label="error") from None
        self.guard.success(bucket)
        return principal

    async def _check(self, values: list[str], bucket: Hashable, blocked: Rejection | None = None) -> Principal:
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
            self._admit(tid, bucket, blocked)
            if not await self._verify(rec, token, bucket, ckey, now):
                raise unauthenticated("api token: invalid", label="api_token_invalid")
        if rec.role not in self.s.accept_roles:
            raise permission_denied("api token: role not accepted here", label="api_token_role")
        return Principal(rec.name, rec.role, self.name, tid, float(rec.expires_at) if rec.expires_at else None)

    # --- per token id ---------------------------------------------------------------------

    def _id_state(self, tid: str, now: float) -> _TokenIdState:
        st = self._ids.get(tid)
        if st is None:
            st = self._ids[tid] = _TokenIdState(now)
            while len(self._ids) > self.s.max_tracked_token_ids:
                self._ids.popitem(last=False)
        self._ids.move_to_end(tid)
        return st

    def _under_attack(self, tid: str) -> bool:
        # The guard's verdict on the id key is only a signal here: it must never become the
        # holder's refusal (its PERMISSION_DENIED or backoff would lock the holder out).
        try:
            self.guard.check(id_key(tid))
        except Rejection:
            return True
        return False

    def _admit(self, tid: str, bucket: Hashable, blocked: Rejection | None = None) -> None:
        """Before Argon2: let the holder through, throttle strangers of a token id under attack.

        An address the guard blocks (others failed from it: a shared NAT, the admin's one local
        bucket) is never refused outright either, or the right token would be locked out by
        others' failures: its uncached attempts share the id's slow budget instead.
        """
        if blocked is None and not self._under_attack(tid):
            return
        now = self.monotonic()
        st = self._id_state(tid, now)
        if blocked is None and bucket in st.known:
            self.admitted_known_address += 1
            return  # the holder's own budget: its address bucket's brute-force counters
        rate = self.s.under_attack_verifications_per_second
        st.allowance = min(1.0, st.allowance + (now - st.stamp) * rate)
        st.stamp = now
        if st.allowance >= 1.0:
            st.allowance -= 1.0
            return
        self.refused_id_throttled += 1
        raise resource_exhausted("api token: too many failed attempts for this token; retry later",
                                 retry_after=round((1.0 - st.allowance) / rate, 3), label="api_token_id_throttled")

    def _remember(self, tid: str, bucket: Hashable) -> None:
        if self.s.known_addresses_per_token == 0:
            return
        known = self._id_state(tid, self.monotonic()).known
        known[bucket] = None
        known.move_to_end(bucket)
        while len(known) > self.s.known_addresses_per_token:
            known.popitem(last=False)

    async def _verify(self, rec: TokenRecord, token: str, bucket: Hashable, ckey: bytes, now: float) -> bool:
        cf = self.pool.submit(self._verify_sync, rec.hash, token)
        try:
            ok = await asyncio.shield(asyncio.wrap_future(cf))
        except asyncio.CancelledError:
            # The call's deadline ended the wait. Still queued: drop it. Already running: its verdict
            # still counts, or a flood whose every attempt outlives the deadline (a slow, shared
            # machine) would cost Argon2 runs without ever being counted as failures.
            if not cf.cancel():
                loop = asyncio.get_running_loop()
                cf.add_done_callback(lambda f: self._late(loop, f, rec, bucket, ckey, now))
            raise
        self._record(ok, rec, bucket, ckey, now)
        return ok

    def _late(self, loop: asyncio.AbstractEventLoop, f: concurrent.futures.Future[bool], rec: TokenRecord,
              bucket: Hashable, ckey: bytes, now: float) -> None:
        """On the pool thread, for a verification whose caller has gone: hand the verdict to the loop."""
        if f.cancelled() or f.exception() is not None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            loop.call_soon_threadsafe(self._late_verdict, f.result(), rec, bucket, ckey, now)

    def _late_verdict(self, ok: bool, rec: TokenRecord, bucket: Hashable, ckey: bytes, now: float) -> None:
        self.late_verdicts += 1
        self._record(ok, rec, bucket, ckey, now)
        if ok:  # the retry of a holder whose call timed out is a cache hit
            self.guard.success(bucket)
        else:  # authenticate() saw a cancellation, not a refusal: count the address's failure here
            self.guard.failure(bucket)

    def _record(self, ok: bool, rec: TokenRecord, bucket: Hashable, ckey: bytes, now: float) -> None:
        if not ok:
            self.guard.failure(id_key(rec.id))
            return
        self.guard.success(id_key(rec.id))
        self._remember(rec.id, bucket)
        until = now + self.s.cache_ttl_seconds
        if rec.expires_at is not None:
            until = min(until, float(rec.expires_at))
        self.cache.put(ckey, _Hit(rec.id, rec.hash), until, now)

    def _verify_sync(self, stored: str, token: str) -> bool:
        # On a pool thread; argon2-cffi releases the GIL, so this does not stall the event loop.
        try:
            return self._hasher.verify(stored, token)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def close(self) -> None:
        """Stop the verifier threads (queued verifications are cancelled)."""
        self.pool.close()

    # --- runtime view (admin API, metrics) ------------------------------------------------

    def reload_store(self) -> None:
        """Re-read the token store now (after an admin revocation), not at the next interval."""
        self._store.refresh(force=True)

    def counters(self) -> dict[str, float | int]:
        """Load counters, cheap and secret-free: the verifier pool's and the per-token-id ones."""
        return {**self.pool.stats(), "refused_id_throttled": self.refused_id_throttled,
                "admitted_known_address": self.admitted_known_address, "late_verdicts": self.late_verdicts}

    def state(self) -> dict[str, Any]:
        self._store.refresh(force=True)
        return {
            "tokens": [{"id": r.id, "name": r.name, "role": r.role, "created_at": r.created_at,
                        "expires_at": r.expires_at, "revoked": r.revoked} for r in self._store.value.values()],
            "cache_entries": len(self.cache),
            "brute_force": self.guard.snapshot(),
            "verification": self.counters(),
        }
