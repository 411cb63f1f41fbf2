"""The ``jwt`` authenticator: ES256 bearer tokens checked in nine ordered steps.

PyJWT is not used on this path: it keeps the last of duplicate JSON keys, has no lifetime bound,
does not require ``exp`` by default and has no header allowlist (see the plugin README). Each step
below is a small function; each refusal is UNAUTHENTICATED with a reason naming its step and a
bounded metric label (``step5_signature``), and never echoes the token or a claim value.

After step 9 come two checks that are not about the token: the trader's IP allowlist
(PERMISSION_DENIED) and, around everything, the brute-force guard of the client's address bucket.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from swqos_auth_jwt.api_tokens import API_TOKEN_PREFIX
from swqos_auth_jwt.bruteforce import BruteForceGuard, BruteForceSettings
from swqos_auth_jwt.cache import ExpiringCache
from swqos_auth_jwt.policy import (
    Allowlist,
    RevocationFile,
    Revocations,
    StoredPolicy,
    parse_allowlist_file,
    parse_networks,
)
from swqos_auth_jwt.strict import StrictDecodeError, b64url_decode, b64url_encode, json_object
from swqos_auth_jwt.watched import WatchedJson
from swqos_core.errors import ConfigError, Rejection, permission_denied, unauthenticated
from swqos_core.layers import ClientAddress, Principal, RequestHead, Role
from swqos_core.store import StateStore

log = logging.getLogger("swqos.auth.jwt")

#: Order of the P-256 group: r and s must lie in [1, n-1].
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_HALF_N = P256_N // 2
#: ``sub`` and ``jti`` are printable ASCII without space (RFC 5234 VCHAR): they reach audit lines,
#: metrics and admin listings, where a control character or a look-alike letter would forge or
#: hide a line (``jq -r`` prints JSON-escaped control characters raw), and a space would make
#: ``"a"`` and ``"a "`` two subjects that read the same.
CLAIM_ID_RE = re.compile(r"[\x21-\x7e]{1,256}")
KID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
TOKEN_RE = re.compile(r"[A-Za-z0-9_.-]+")
HEADER_ALLOWED = frozenset({"alg", "typ", "kid"})
#: Named in the refusal so an operator sees which known-dangerous parameter was sent.
HEADER_KNOWN_BAD = frozenset({"jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "crit", "zip", "b64", "enc", "p2c", "p2s",
                              "cty", "epk", "apu", "apv", "iv", "tag"})
MAX_CLAIM_STR = 256
MAX_AUD_ITEMS = 16
MAX_INT = 2**53
BEARER = "Bearer "


@dataclass
class JwtKeySettings:
    #: PEM file with the issuer's EC P-256 public key (relative paths: against the config file).
    public_key: Path
    #: Unix seconds or ISO 8601 with offset; tokens are refused under this key before it.
    not_before: int | str | None = None
    #: Unix seconds or ISO 8601 with offset; tokens are refused under this key from then on.
    not_after: int | str | None = None


@dataclass
class JwtSettings:
    #: Exact ``iss`` of trader tokens.
    issuer: str
    #: This validator's audience; ``aud`` must equal it or, as a list, contain it exactly.
    audience: str
    #: Trader key set: kid -> key. Several at once for rotation.
    keys: dict[str, JwtKeySettings]
    #: Required header ``typ``.
    typ: str = "JWT"
    #: Clock skew allowed on exp / nbf / iat, at most 30 s.
    leeway_seconds: int = 30
    #: Largest ``exp - iat``.
    max_lifetime_seconds: int = 900
    #: Largest token (the part after ``Bearer ``).
    max_token_bytes: int = 1024
    #: Exact ``iss`` of the marketplace's probe tokens (role "probe"); needed with probe_keys.
    probe_issuer: str | None = None
    #: Probe key set: kid -> key. Kids must differ from the trader set's.
    probe_keys: dict[str, JwtKeySettings] = field(default_factory=dict)
    #: JSON ``{"sub": [...], "jti": [...], "kid": [...]}``, re-read when it changes.
    revocation_file: Path | None = None
    #: JSON ``{"<sub>": ["<cidr>", ...]}``, re-read when it changes.
    allowlist_file: Path | None = None
    #: Refuse subjects that have no allowlist at all (otherwise they may connect from anywhere).
    allowlist_required: bool = False
    #: How often (at most) the two files are checked for changes.
    reload_interval_seconds: float = 1.0
    #: Verified tokens kept (by exact token string) until their ``exp``.
    cache_size: int = 10_000
    brute_force: BruteForceSettings = field(default_factory=BruteForceSettings)

    def __post_init__(self) -> None:
        if not (0 <= self.leeway_seconds <= 30):
            raise ValueError("leeway_seconds must be between 0 and 30")
        if self.max_lifetime_seconds <= 0:
            raise ValueError("max_lifetime_seconds must be positive")
        if not (256 <= self.max_token_bytes <= 8192):
            raise ValueError("max_token_bytes must be between 256 and 8192")
        if not self.issuer or not self.audience:
            raise ValueError("issuer and audience must not be empty")
        if self.cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        if self.reload_interval_seconds <= 0:
            raise ValueError("reload_interval_seconds must be positive")


def _instant(value: int | str | None, where: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, int):
        return float(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{where}: not an ISO 8601 time: {value!r}")
        return None
    if dt.tzinfo is None:
        problems.append(f"{where}: ISO 8601 time needs an offset (e.g. Z): {value!r}")
        return None
    return dt.timestamp()


@dataclass(frozen=True)
class PinnedKey:
    kid: str
    key: ec.EllipticCurvePublicKey
    issuer: str
    role: Role
    not_before: float | None
    not_after: float | None


def load_key_set(keys: dict[str, JwtKeySettings], issuer: str, role: Role, where: str,
                 problems: list[str]) -> dict[str, PinnedKey]:
    out = {}
    for kid, ks in keys.items():
        w = f"{where}.{kid}"
        if not KID_RE.fullmatch(kid):
            problems.append(f"{w}: kid must be 1-64 characters of [A-Za-z0-9._-]")
            continue
        try:
            pub = load_pem_public_key(Path(ks.public_key).read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"{w}: cannot load public key {ks.public_key}: {exc}")
            continue
        if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(pub.curve, ec.SECP256R1):
            problems.append(f"{w}: {ks.public_key} is not an EC P-256 public key (ES256 only)")
            continue
        nb = _instant(ks.not_before, f"{w}.not_before", problems)
        na = _instant(ks.not_after, f"{w}.not_after", problems)
        if nb is not None and na is not None and na <= nb:
            problems.append(f"{w}: not_after must be later than not_before")
        out[kid] = PinnedKey(kid, pub, issuer, role, nb, na)
    return out


@dataclass(frozen=True, slots=True)
class Verified:
    """What the cache keeps for a token that passed steps 1-8."""

    principal: Principal
    sub: str
    jti: str
    kid: str


def _step(n: int, name: str, detail: str) -> Rejection:
    return unauthenticated(f"jwt step {n} ({name}): {detail}", label=f"step{n}_{name}")


def _int_claim(claims: dict[str, Any], name: str, required: bool) -> int | None:
    if name not in claims:
        if required:
            raise _step(6, "claims", f"missing claim {name}")
        return None
    v = claims[name]
    if isinstance(v, bool) or not isinstance(v, int) or not (-MAX_INT < v < MAX_INT):
        raise _step(6, "claims", f"claim {name} must be an integer NumericDate")
    return v


def low_s_spelling(value: str) -> str:
    """The one spelling of an ES256 token that the cache and the verifier see.

    ECDSA signatures are malleable: if (r, s) verifies, so does (r, n - s), so every signed token
    has a twin. Refusing the high-s twin would refuse about half of the tokens of a standard ES256
    issuer (RFC 7518 does not ask for low s; OpenSSL, Go, Node and PyJWT sign with either), so the
    marketplace's signer would have to change first. Normalising to low s before the cache gives
    what matters without that: both spellings are one token, with one cache entry, one
    verification and one identity. Anything that does not parse is returned unchanged, for step 1
    and step 5 to refuse.
    """
    signing_input, dot, sig = value.rpartition(".")
    if not dot or len(sig) != 86:  # 64 bytes in unpadded base64url
        return value
    try:
        raw = b64url_decode(sig)
    except StrictDecodeError:
        return value
    s = int.from_bytes(raw[32:], "big")
    if not P256_HALF_N < s < P256_N:
        return value
    return f"{signing_input}.{b64url_encode(raw[:32] + (P256_N - s).to_bytes(32, 'big'))}"


def _str_claim(claims: dict[str, Any], name: str) -> str:
    if name not in claims:
        raise _step(6, "claims", f"missing claim {name}")
    v = claims[name]
    if not isinstance(v, str) or not (0 < len(v) <= MAX_CLAIM_STR):
        raise _step(6, "claims", f"claim {name} must be a non-empty string")
    return v


class JwtAuthenticator:
    """Layer 4 authenticator for ``authorization: Bearer <ES256 JWT>``."""

    name = "jwt"

    def __init__(self, settings: JwtSettings, *, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 store: StateStore | None = None) -> None:
        self.s = settings
        self.clock = clock
        self.log = logger or log
        problems: list[str] = []
        keys = load_key_set(settings.keys, settings.issuer, "trader", "keys", problems)
        if not settings.keys:
            problems.append("keys: at least one trader key is required")
        if settings.probe_keys and not settings.probe_issuer:
            problems.append("probe_keys need probe_issuer")
        if settings.probe_issuer and not settings.probe_keys:
            problems.append("probe_issuer needs probe_keys")
        probe = load_key_set(settings.probe_keys, settings.probe_issuer or "", "probe", "probe_keys", problems)
        for kid in set(keys) & set(probe):
            problems.append(f"kid {kid!r} is in both keys and probe_keys; a kid must select exactly one issuer")
        self.revocations = Revocations()
        self.allowlist = Allowlist(required=settings.allowlist_required)
        self._files: list[WatchedJson[Any]] = []
        for path, parse, apply in (
            (settings.revocation_file, RevocationFile.parse, self._apply_revocation_file),
            (settings.allowlist_file, parse_allowlist_file, self._apply_allowlist_file),
        ):
            if path is None:
                continue
            try:
                w = WatchedJson(path, parse, interval=settings.reload_interval_seconds, monotonic=monotonic,
                                logger=self.log, on_change=apply)
            except ConfigError as exc:
                problems += exc.problems
                continue
            apply(w.value)
            self._files.append(w)
        if problems:
            raise ConfigError(problems)
        self._keys: dict[str, PinnedKey] = {**keys, **probe}
        self.cache: ExpiringCache[Verified] = ExpiringCache(settings.cache_size)
        self.guard = BruteForceGuard(settings.brute_force, monotonic=monotonic, name="jwt", store=store)
        #: Admin changes as policy records in the state store (None: in memory only, as in unit tests).
        self.policy = StoredPolicy(self.revocations, self.allowlist, store, self._purge_revoked) if store else None

    def _purge_revoked(self, kind: str, ident: str) -> None:
        attr = {"sub": "sub", "jti": "jti", "kid": "kid"}[kind]
        self.cache.purge(lambda v: getattr(v, attr) == ident)

    # --- the layer method -----------------------------------------------------------------

    async def authenticate(self, head: RequestHead, client: ClientAddress) -> Principal | None:
        values = head.header_values("authorization")
        if not values:
            return None  # no credential at all: the pipeline refuses unless another authenticator claims it
        if len(values) == 1 and values[0].startswith(BEARER + API_TOKEN_PREFIX):
            return None  # an API token: the api_token authenticator's business
        bucket = client.key
        blocked = self.guard.verdict(bucket)
        try:
            principal = self.check(values, client, blocked)
        except Rejection as exc:
            if exc is not blocked:  # the address's own state is not a new failure
                self.guard.failure(bucket)
            raise
        except Exception:  # fail closed: a bug is a refusal, never a pass
            self.guard.failure(bucket)
            self.log.exception("jwt verification raised unexpectedly")
            raise unauthenticated("jwt: credential could not be verified", label="error") from None
        self.guard.success(bucket)
        return principal

    def check(self, values: list[str], client: ClientAddress, blocked: Rejection | None = None) -> Principal:
        """Steps 1-9 and the allowlist, synchronously (cache first). Raises a Rejection.

        ``blocked`` is the brute-force guard's refusal of the caller's address: others' failures
        there must not lock out a token already verified, so a cached token still passes every
        per-request check, and only an unverified one gets the refusal (no ES256 work is spent).
        """
        for w in self._files:
            w.refresh()
        if len(values) != 1:
            raise _step(1, "envelope", "exactly one authorization header is allowed")
        value = values[0]
        now = self.clock()
        v = self.cache.get(value, now)  # a low-s token, as almost every cached one is
        if v is None:
            canonical = low_s_spelling(value)
            if canonical != value:
                v = self.cache.get(canonical, now)
            if v is None:
                if blocked is not None:
                    raise blocked
                v = self._verify(canonical, now)
        # Every request, cache hit or not: key, subject and token revocation, then the allowlist.
        if self.revocations.key_revoked(v.kid) or v.kid not in self._keys:
            raise _step(4, "kid", "key revoked")
        if self.revocations.subject_revoked(v.sub):
            # The token is authentic; its trader is no longer allowed: PERMISSION_DENIED, like the allowlist.
            raise permission_denied("jwt step 9 (revocation): subject revoked", label="step9_revocation")
        if self.revocations.token_revoked(v.jti):
            raise _step(9, "revocation", "token revoked")
        if not self.allowlist.allows(v.sub, client.ip):
            raise permission_denied("client address is not on this trader's allowlist", label="allowlist")
        return v.principal

    # --- steps 1-8 (uncached path) --------------------------------------------------------

    def _verify(self, value: str, now: float) -> Verified:
        header_raw, claims_raw, sig, signing_input = self._step1_envelope(value)
        header = self._step2_header(header_raw)
        self._step3_alg_typ(header)
        key = self._step4_kid(header, now)
        self._step5_signature(key, sig, signing_input)
        claims = self._step6_claims(claims_raw)
        self._step7_iss_aud(key, claims)
        exp = self._step8_time(claims, now)
        sub, jti = claims["sub"], claims["jti"]
        verified = Verified(Principal(sub, key.role, self.name, jti, float(exp)), sub, jti, key.kid)
        until = float(exp) if key.not_after is None else min(float(exp), key.not_after)
        self.cache.put(value, verified, until, now)  # keyed by the exact header value
        return verified

    def _step1_envelope(self, value: str) -> tuple[bytes, bytes, bytes, bytes]:
        if not value.startswith(BEARER):
            raise _step(1, "envelope", "expected 'Bearer <token>'")
        token = value[len(BEARER):]
        if not token:
            raise _step(1, "envelope", "empty token")
        if len(token) > self.s.max_token_bytes:
            raise _step(1, "envelope", f"token longer than {self.s.max_token_bytes} bytes")
        if not TOKEN_RE.fullmatch(token):
            raise _step(1, "envelope", "characters outside the base64url alphabet")
        parts = token.split(".")
        if len(parts) != 3:
            raise _step(1, "envelope", "expected exactly three parts")
        if not all(parts):
            raise _step(1, "envelope", "empty part")
        try:
            header_raw, claims_raw, sig = (b64url_decode(p) for p in parts)
        except StrictDecodeError:
            raise _step(1, "envelope", "non-canonical base64url") from None
        return header_raw, claims_raw, sig, f"{parts[0]}.{parts[1]}".encode("ascii")

    def _step2_header(self, raw: bytes) -> dict[str, Any]:
        try:
            header = json_object(raw)
        except StrictDecodeError:
            raise _step(2, "header", "not a JSON object without duplicate keys") from None
        for k in header:
            if k not in HEADER_ALLOWED:
                named = k if k in HEADER_KNOWN_BAD else "unknown"
                raise _step(2, "header", f"header parameter {named} is not allowed")
        return header

    def _step3_alg_typ(self, header: dict[str, Any]) -> None:
        if header.get("alg") != "ES256":
            raise _step(3, "alg", "alg must be ES256")
        if header.get("typ") != self.s.typ:
            raise _step(3, "alg", "typ is not the expected type")

    def _step4_kid(self, header: dict[str, Any], now: float) -> PinnedKey:
        kid = header.get("kid")
        if not isinstance(kid, str) or not KID_RE.fullmatch(kid):
            raise _step(4, "kid", "kid missing or malformed")
        key = self._keys.get(kid)
        if key is None:
            raise _step(4, "kid", "unknown kid")
        if self.revocations.key_revoked(kid):
            raise _step(4, "kid", "key revoked")
        if key.not_before is not None and now < key.not_before:
            raise _step(4, "kid", "key not yet valid")
        if key.not_after is not None and now >= key.not_after:
            raise _step(4, "kid", "key expired")
        return key

    def _step5_signature(self, key: PinnedKey, sig: bytes, signing_input: bytes) -> None:
        if len(sig) != 64:
            raise _step(5, "signature", "signature must be 64 bytes r||s")
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        if not (0 < r < P256_N and 0 < s < P256_N):  # all-zero "psychic" signatures end here
            raise _step(5, "signature", "signature out of range")
        if s > P256_HALF_N:  # check() hands over the low-s spelling: only it may reach the cache
            raise _step(5, "signature", "high-s signature")
        try:
            key.key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise _step(5, "signature", "signature does not verify") from None

    def _step6_claims(self, raw: bytes) -> dict[str, Any]:
        try:
            claims = json_object(raw)
        except StrictDecodeError:
            raise _step(6, "claims", "not a JSON object without duplicate keys") from None
        for name in ("iss", "sub", "jti"):
            _str_claim(claims, name)
        for name in ("sub", "jti"):
            if not CLAIM_ID_RE.fullmatch(claims[name]):
                raise _step(6, "claims", f"claim {name} must be printable ASCII without spaces")
        if "aud" not in claims:
            raise _step(6, "claims", "missing claim aud")
        aud = claims["aud"]
        if isinstance(aud, list):
            if not (0 < len(aud) <= MAX_AUD_ITEMS) or not all(isinstance(a, str) for a in aud):
                raise _step(6, "claims", "claim aud must be a string or a short list of strings")
        elif not isinstance(aud, str):
            raise _step(6, "claims", "claim aud must be a string or a short list of strings")
        _int_claim(claims, "exp", True)
        _int_claim(claims, "iat", True)
        _int_claim(claims, "nbf", False)
        return claims

    def _step7_iss_aud(self, key: PinnedKey, claims: dict[str, Any]) -> None:
        if claims["iss"] != key.issuer:  # the key must belong to the issuer the token names (RFC 8725 §3.8)
            raise _step(7, "iss_aud", "iss is not the issuer of this key")
        aud = claims["aud"]
        auds = aud if isinstance(aud, list) else [aud]
        if not any(a == self.s.audience for a in auds):
            raise _step(7, "iss_aud", "aud does not name this validator")

    def _step8_time(self, claims: dict[str, Any], now: float) -> int:
        lw = self.s.leeway_seconds
        exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf")
        if exp <= now - lw:
            raise _step(8, "time", "token expired")
        if nbf is not None and nbf > now + lw:
            raise _step(8, "time", "token not yet valid (nbf)")
        if iat > now + lw:
            raise _step(8, "time", "iat is in the future")
        if exp <= iat:
            raise _step(8, "time", "exp is not after iat")
        if exp - iat > self.s.max_lifetime_seconds:
            raise _step(8, "time", f"lifetime above {self.s.max_lifetime_seconds} s")
        return exp

    # --- files ----------------------------------------------------------------------------

    def _apply_revocation_file(self, value: RevocationFile) -> None:
        self.revocations.file = value
        if value.kid and hasattr(self, "cache"):
            self.cache.purge(lambda v: v.kid in value.kid)

    def _apply_allowlist_file(self, value: dict[str, Any]) -> None:
        self.allowlist.file = value

    # --- runtime changes (admin API); synchronous, run on the event loop --------------------

    def revoke_subject(self, sub: str) -> None:
        self.revocations.sub.add(sub)
        self.cache.purge(lambda v: v.sub == sub)

    def restore_subject(self, sub: str) -> bool:
        """Lift an admin revocation. Returns False if the subject is still revoked (by the file)."""
        self.revocations.sub.discard(sub)
        return not self.revocations.subject_revoked(sub)

    def revoke_token(self, jti: str) -> None:
        self.revocations.jti.add(jti)
        self.cache.purge(lambda v: v.jti == jti)

    def restore_token(self, jti: str) -> bool:
        self.revocations.jti.discard(jti)
        return not self.revocations.token_revoked(jti)

    def revoke_key(self, kid: str) -> None:
        self.revocations.kid.add(kid)
        self.cache.purge(lambda v: v.kid == kid)

    def restore_key(self, kid: str) -> bool:
        self.revocations.kid.discard(kid)
        return not self.revocations.key_revoked(kid)

    def set_allowlist(self, sub: str, cidrs: Iterable[str] | None) -> None:
        """Replace ``sub``'s list (``[]`` refuses every address); ``None`` drops the admin override,
        leaving the file's list (if any) in force. Raises ValueError for a malformed CIDR."""
        if cidrs is None:
            self.allowlist.runtime.pop(sub, None)
        else:
            self.allowlist.runtime[sub] = parse_networks(list(cidrs))

    def state(self) -> dict[str, Any]:
        """Current policy, for the admin API (no secrets in it)."""
        return {
            "revoked": self.revocations.snapshot(),
            "allowlist": self.allowlist.snapshot(),
            "keys": {k: {"role": p.role, "issuer": p.issuer, "not_before": p.not_before, "not_after": p.not_after,
                         "revoked": self.revocations.key_revoked(k)} for k, p in sorted(self._keys.items())},
            "cache_entries": len(self.cache),
            "brute_force": self.guard.snapshot(),
        }
