"""API tokens: creation, Argon2id storage, verification off the event loop, cache, caps, revocation."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import threading

import anyio
import grpc
import pytest
from argon2 import Type, extract_parameters

from swqos_auth_jwt import api_tokens
from swqos_auth_jwt.api_tokens import ApiTokenAuthenticator, ApiTokenSettings, create_token, revoke_token
from swqos_auth_jwt.bruteforce import BruteForceSettings
from swqos_core.errors import ConfigError, Rejection

from .authjwt_helpers import FakeClock, client, head


@pytest.fixture
def store(tmp_path):
    return tmp_path / "tokens.json"


def guard_off() -> BruteForceSettings:
    """Brute-force limits out of the way, for tests about something else."""
    return BruteForceSettings(backoff_after=1000, ban_after=1000, ban_after_56=0, ban_after_48=0)


def make(store, clock=None, mono=None, **over) -> ApiTokenAuthenticator:
    s = ApiTokenSettings(store=store, **over)
    return ApiTokenAuthenticator(s, clock=clock or FakeClock(1_800_000_000), monotonic=mono or FakeClock(0.0))


class Spy:
    """Counts Argon2 verifications and records the thread they ran in."""

    def __init__(self, auth: ApiTokenAuthenticator) -> None:
        self.calls: list[int] = []
        inner = auth._verify_sync

        def spy(stored, token):
            self.calls.append(threading.get_ident())
            return inner(stored, token)

        auth._verify_sync = spy  # type: ignore[method-assign]


async def outcome(auth, value, cl=None):
    try:
        return await auth.authenticate(head(value), cl or client())
    except Rejection as r:
        return r


def test_created_token_format_and_store(store):
    token, rec = create_token(store, "ops", "admin")
    assert api_tokens.TOKEN_RE.fullmatch(token)
    assert token.startswith(f"swqat_{rec.id}_")
    assert len(api_tokens.b64url_decode(token[-43:])) == 32
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    text = store.read_text()
    assert token not in text and token[-43:] not in text
    p = extract_parameters(json.loads(text)["tokens"][rec.id]["hash"])
    assert (p.type, p.memory_cost, p.time_cost, p.parallelism) == (Type.ID, 19456, 2, 1)
    token2, _ = create_token(store, "ops2")
    assert token2 != token
    assert [f.name for f in store.parent.iterdir()] == ["tokens.json"]  # no temp files left behind
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600


async def test_valid_admin_token(store):
    token, rec = create_token(store, "ops", "admin")
    auth = make(store)
    p = await auth.authenticate(head(f"Bearer {token}"), client())
    assert (p.subject, p.role, p.authenticator, p.token_id) == ("ops", "admin", "api_token", rec.id)


async def test_trader_tokens_only_where_configured(store):
    token, _ = create_token(store, "bot", "trader")
    r = await outcome(make(store), f"Bearer {token}")
    assert r.code == grpc.StatusCode.PERMISSION_DENIED and r.label == "api_token_role"
    p = await make(store, accept_roles=["trader", "admin"]).authenticate(head(f"Bearer {token}"), client())
    assert p.role == "trader"


async def test_wrong_secret_unknown_id_and_malformed(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store, brute_force=guard_off())
    spy = Spy(auth)
    wrong = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    r = await outcome(auth, f"Bearer {wrong}")
    assert r.code == grpc.StatusCode.UNAUTHENTICATED and r.label == "api_token_invalid"
    assert len(spy.calls) == 1
    r = await outcome(auth, f"Bearer swqat_{'0' * 16}_{token[-43:]}")
    assert r.code == grpc.StatusCode.UNAUTHENTICATED and r.label == "api_token_unknown"
    assert len(spy.calls) == 1  # an unknown id costs no hashing
    for bad in ["Bearer swqat_", "Bearer swqat_xyz", f"Bearer {token}x", f"Bearer {token[:-1]}",
                f"Bearer {token[:-1]}=", f"Bearer {token[:-1]}!"]:
        r = await outcome(auth, bad)
        assert r.code == grpc.StatusCode.UNAUTHENTICATED and r.label == "api_token_malformed", bad
    assert len(spy.calls) == 1


async def test_not_claimed_without_an_api_token(store):
    create_token(store, "ops", "admin")
    auth = make(store)
    assert await auth.authenticate(head(), client()) is None
    assert await auth.authenticate(head("Bearer eyJhbGciOi.x.y"), client()) is None


async def test_two_headers_refused(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store)
    with pytest.raises(Rejection) as ei:
        await auth.authenticate(head(f"Bearer {token}", f"Bearer {token}"), client())
    assert ei.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_verification_runs_off_the_event_loop_and_is_cached(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store)
    spy = Spy(auth)
    for _ in range(5):
        assert (await auth.authenticate(head(f"Bearer {token}"), client())).subject == "ops"
    assert len(spy.calls) == 1
    assert spy.calls[0] != threading.get_ident()
    # the cache is keyed by an HMAC of the token under a per-process key, never the token
    (key,) = list(auth.cache._d)
    assert key == hmac.new(auth._hmac_key, token.encode(), hashlib.sha256).digest()
    assert token.encode() not in key


async def test_cache_expires(store):
    token, _ = create_token(store, "ops", "admin")
    clock = FakeClock(1_800_000_000)
    auth = make(store, clock=clock, cache_ttl_seconds=60)
    spy = Spy(auth)
    await auth.authenticate(head(f"Bearer {token}"), client())
    clock.now += 61
    await auth.authenticate(head(f"Bearer {token}"), client())
    assert len(spy.calls) == 2


async def test_revocation_reaches_cached_tokens(store):
    token, rec = create_token(store, "ops", "admin")
    mono = FakeClock(0.0)
    auth = make(store, mono=mono)
    await auth.authenticate(head(f"Bearer {token}"), client())
    assert revoke_token(store, "ops") == [rec.id]
    mono.now += 2
    r = await outcome(auth, f"Bearer {token}")
    assert r.code == grpc.StatusCode.UNAUTHENTICATED and r.label == "api_token_unknown"
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    assert [t["revoked"] for t in auth.state()["tokens"]] == [True]


async def test_expiring_token(store):
    token, _ = create_token(store, "ops", "admin", ttl=100)
    clock = FakeClock(api_tokens.read_store(store).popitem()[1].created_at + 50)
    auth = make(store, clock=clock)
    assert (await auth.authenticate(head(f"Bearer {token}"), client())).expires_at is not None
    clock.now += 60
    r = await outcome(auth, f"Bearer {token}")
    assert r.code == grpc.StatusCode.UNAUTHENTICATED


async def test_concurrency_cap(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store, max_concurrent_verifications=2, max_waiting_verifications=1,
                brute_force=guard_off())
    release = threading.Event()
    running = [0]
    peak = [0]
    lock = threading.Lock()

    def slow(stored, tok):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1
        return False

    auth._verify_sync = slow  # type: ignore[method-assign]
    results: list = []

    async def one(i):
        results.append(await outcome(auth, f"Bearer {token}", client(f"203.0.113.{i}")))

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, i)
        with anyio.fail_after(10):
            while len(results) < 2:
                await anyio.sleep(0.01)
        release.set()
    codes = sorted(r.code.name for r in results)
    assert codes == ["RESOURCE_EXHAUSTED"] * 2 + ["UNAUTHENTICATED"] * 3
    assert peak[0] <= 2
    busy = [r for r in results if r.code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert all(r.retry_after and r.label == "api_token_busy" for r in busy)


async def test_a_blocked_address_is_slowed_before_hashing_but_the_right_token_still_gets_in(store):
    token, _ = create_token(store, "ops", "admin")
    mono = FakeClock(0.0)
    auth = make(store, mono=mono)
    spy = Spy(auth)
    wrong = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    codes = [(await outcome(auth, f"Bearer {wrong}")).code for _ in range(7)]
    # Five failures block the address; then its uncached attempts share the id's slow budget
    # (one Argon2 run per second by default): the sixth is verified, the seventh waits.
    assert codes[:6] == [grpc.StatusCode.UNAUTHENTICATED] * 6
    assert codes[6] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(spy.calls) == 6
    waited = await outcome(auth, f"Bearer {token}")  # the holder, from the same (shared) address
    assert isinstance(waited, Rejection) and waited.code == grpc.StatusCode.RESOURCE_EXHAUSTED and waited.retry_after
    mono.advance(waited.retry_after)
    principal = await outcome(auth, f"Bearer {token}")
    assert not isinstance(principal, Rejection) and principal.subject == "ops"  # slowed, never locked out
    assert len(spy.calls) == 7


def test_missing_store_and_tampered_parameters(store, tmp_path):
    with pytest.raises(ConfigError):
        make(tmp_path / "absent.json")
    _, rec = create_token(store, "ops", "admin")
    doc = json.loads(store.read_text())
    doc["tokens"][rec.id]["hash"] = doc["tokens"][rec.id]["hash"].replace("m=19456", "m=4194304")
    store.write_text(json.dumps(doc))
    with pytest.raises(ConfigError):
        make(store)


def test_settings_validation(store):
    with pytest.raises(ValueError):
        ApiTokenSettings(store=store, accept_roles=["probe"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        ApiTokenSettings(store=store, max_concurrent_verifications=0)


# --- hostile load: per-token-id failures, the fixed pool, the bounded queue (issue 13) -----------


def wrong_secret(token: str, i: int) -> str:
    """Another well-formed secret for the same (public) token id."""
    from swqos_auth_jwt.strict import b64url_encode

    return token[: -43] + b64url_encode(i.to_bytes(32, "big"))


async def test_failures_counted_per_token_id_across_rotating_addresses(store):
    token, _ = create_token(store, "ops", "admin")
    mono = FakeClock(0.0)
    auth = make(store, mono=mono)
    spy = Spy(auth)
    # every attempt from a fresh address: the per-address guard never sees a second failure
    rs = [await outcome(auth, f"Bearer {wrong_secret(token, i)}", client(f"203.0.113.{i + 1}")) for i in range(12)]
    assert [r.label for r in rs[:5]] == ["api_token_invalid"] * 5
    # the id's own count is in backoff now: one stranger gets its Argon2 run, the rest are refused first
    assert rs[5].label == "api_token_invalid"  # the strangers' allowance starts full: one run
    later = rs[6:]
    assert all(r.code == grpc.StatusCode.RESOURCE_EXHAUSTED and r.label == "api_token_id_throttled"
               and r.retry_after and 0 < r.retry_after <= 1.0 for r in later)
    assert len(spy.calls) == 6
    assert auth.counters()["refused_id_throttled"] == len(later)
    # the allowance refills at under_attack_verifications_per_second (1/s): one more Argon2 run
    mono.now += 1.0
    before = len(spy.calls)
    r = await outcome(auth, f"Bearer {wrong_secret(token, 99)}", client("203.0.113.200"))
    assert r.label == "api_token_invalid" and len(spy.calls) == before + 1
    r = await outcome(auth, f"Bearer {wrong_secret(token, 100)}", client("203.0.113.201"))
    assert r.label == "api_token_id_throttled" and len(spy.calls) == before + 1


async def test_holder_is_never_locked_out_by_failures_against_its_id(store):
    token, rec = create_token(store, "ops", "admin")
    mono = FakeClock(0.0)
    auth = make(store, mono=mono, cache_size=0)  # no cache: every request of the holder pays Argon2
    spy = Spy(auth)
    holder = client("198.51.100.7")
    assert (await auth.authenticate(head(f"Bearer {token}"), holder)).subject == "ops"
    # a long flood from rotating addresses: the id is first in backoff, then banned (>= 20 failures)
    for i in range(60):
        await outcome(auth, f"Bearer {wrong_secret(token, i)}", client(f"2001:db8:{i:x}::1"))
    with pytest.raises(Rejection) as ei:
        auth.guard.check(("token", rec.id))
    assert ei.value.code == grpc.StatusCode.PERMISSION_DENIED  # the id key is banned ...
    runs = len(spy.calls)
    for _ in range(3):  # ... and the holder, from the address it used before, is still let in, each time
        p = await auth.authenticate(head(f"Bearer {token}"), holder)
        assert p.subject == "ops" and p.token_id == rec.id
    assert len(spy.calls) == runs + 3
    assert auth.counters()["admitted_known_address"] == 3


async def test_holder_with_a_cached_success_pays_nothing_during_an_attack(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store)
    spy = Spy(auth)
    await auth.authenticate(head(f"Bearer {token}"), client("198.51.100.7"))
    for i in range(30):
        await outcome(auth, f"Bearer {wrong_secret(token, i)}", client(f"203.0.113.{i + 1}"))
    runs = len(spy.calls)
    # a new address with the right secret: the cache (HMAC of the whole token) answers, no Argon2
    p = await auth.authenticate(head(f"Bearer {token}"), client("192.0.2.55"))
    assert p.subject == "ops" and len(spy.calls) == runs


async def test_holder_from_a_new_address_is_slowed_not_refused(store):
    token, _ = create_token(store, "ops", "admin")
    mono = FakeClock(0.0)
    auth = make(store, mono=mono, cache_size=0)
    for i in range(40):
        await outcome(auth, f"Bearer {wrong_secret(token, i)}", client(f"203.0.113.{i + 1}"))
    newcomer = client("192.0.2.55")
    for _ in range(8):  # strangers' allowance is spent: RESOURCE_EXHAUSTED with a hint, never a verdict
        r = await outcome(auth, f"Bearer {token}", newcomer)
        assert r.code == grpc.StatusCode.RESOURCE_EXHAUSTED and r.label == "api_token_id_throttled"
    # these refusals are about load, not the newcomer's credential: its own address is not in backoff
    auth.guard.check(newcomer.key)
    mono.now += 1.0  # it honours the retry-after hint
    p = await auth.authenticate(head(f"Bearer {token}"), newcomer)
    assert p.subject == "ops"


async def test_verifications_run_on_a_fixed_pool_of_threads(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store, max_concurrent_verifications=2, max_waiting_verifications=20, max_queue_wait_seconds=60,
                brute_force=guard_off())
    names: list[str] = []
    inner = auth._verify_sync

    def spy(stored, tok):
        names.append(threading.current_thread().name)
        return inner(stored, tok)

    auth._verify_sync = spy  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(outcome, auth, f"Bearer {wrong_secret(token, i)}", client(f"203.0.113.{i + 1}"))
    assert len(names) == 12
    assert all(n.startswith("swqos-argon2") for n in names)
    assert len(set(names)) <= 2
    assert auth.counters()["runs"] == 12 and auth.pool.pending == 0
    await auth.close()
    r = await outcome(auth, f"Bearer {token}")
    assert r.code == grpc.StatusCode.RESOURCE_EXHAUSTED and r.label == "api_token_busy"


def blocking_verifier(auth):
    release = threading.Event()
    ran: list[str] = []

    def slow(stored, tok):
        ran.append(tok)
        release.wait(10)
        return False

    auth._verify_sync = slow  # type: ignore[method-assign]
    return release, ran


async def test_queue_refuses_early_when_the_wait_would_be_too_long(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store, max_concurrent_verifications=1, max_waiting_verifications=8, max_queue_wait_seconds=0.05,
                brute_force=guard_off())
    release, ran = blocking_verifier(auth)
    auth.pool._verify_seconds = 0.08  # as measured on a busy machine: one verify is longer than the budget
    results: list = []

    async def one(i):
        results.append(await outcome(auth, f"Bearer {wrong_secret(token, i)}", client(f"203.0.113.{i + 1}")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0)
        with anyio.fail_after(10):
            while not ran:
                await anyio.sleep(0.01)
        await one(1)  # would wait ~80 ms for the only thread: refused at once, not queued
        release.set()
    busy = [r for r in results if r.code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(busy) == 1 and busy[0].label == "api_token_busy" and busy[0].retry_after >= 0.08
    assert len(ran) == 1
    assert auth.counters()["refused_wait"] == 1
    auth.guard.check(client("203.0.113.2").key)  # our overload is not counted against the caller
    from swqos_auth_jwt.metrics import AuthMetrics

    collector = AuthMetrics([("api_token", auth)])
    samples = {(n, labels): v for n, labels, v in collector.collect()}
    assert samples[("swqos_auth_api_token_refused", ("api_token", "queue_wait"))] == 1.0
    assert samples[("swqos_auth_api_token_refused", ("api_token", "queue_full"))] == 0.0
    assert samples[("swqos_auth_api_token_verifications", ("api_token",))] == 1.0
    assert {n for n, _ in samples} <= {f.name for f in collector.families}


async def test_a_call_cancelled_in_the_queue_never_runs(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store, max_concurrent_verifications=1, max_waiting_verifications=4, max_queue_wait_seconds=60,
                brute_force=guard_off())
    release, ran = blocking_verifier(auth)
    async with anyio.create_task_group() as tg:
        tg.start_soon(outcome, auth, f"Bearer {wrong_secret(token, 0)}", client("203.0.113.1"))
        with anyio.fail_after(10):
            while not ran:
                await anyio.sleep(0.01)
        with anyio.move_on_after(0.05):  # the call's deadline, while it waits for the thread
            await outcome(auth, f"Bearer {wrong_secret(token, 1)}", client("203.0.113.2"))
        assert auth.pool.pending == 1 and auth.pool.cancelled == 1
        release.set()
    assert len(ran) == 1 and auth.pool.pending == 0


def test_pool_and_attack_settings_validation(store):
    for bad in ({"max_concurrent_verifications": 65}, {"max_waiting_verifications": -1},
                {"max_queue_wait_seconds": -0.1}, {"under_attack_verifications_per_second": 0},
                {"known_addresses_per_token": -1}, {"max_tracked_token_ids": 0}):
        with pytest.raises(ValueError):
            ApiTokenSettings(store=store, **bad)


def gated_verifier(auth, verdict: bool):
    """Each verification waits for one ``gate.release()``, then answers ``verdict``."""
    gate = threading.Semaphore(0)
    ran: list[str] = []

    def gated(stored, tok):
        ran.append(tok)
        gate.acquire(timeout=10)
        return verdict

    auth._verify_sync = gated  # type: ignore[method-assign]
    return gate, ran


async def deadline_mid_verify(auth, value, cl, gate, ran) -> None:
    """The call's deadline ends it while its Argon2 runs; then the verification finishes."""
    n, late = len(ran), auth.late_verdicts
    async with anyio.create_task_group() as tg:
        tg.start_soon(outcome, auth, value, cl)
        with anyio.fail_after(10):
            while len(ran) == n:
                await anyio.sleep(0.005)
        tg.cancel_scope.cancel()
    gate.release()
    with anyio.fail_after(10):
        while auth.late_verdicts == late:
            await anyio.sleep(0.005)


async def test_a_failure_after_the_deadline_still_counts(store):
    token, rec = create_token(store, "ops", "admin")
    auth = make(store, max_queue_wait_seconds=60)
    gate, ran = gated_verifier(auth, False)
    attacker = client("203.0.113.5")
    auth.guard.check(("token", rec.id))
    for i in range(5):  # every attempt outlives its deadline: each one is still a failure
        await deadline_mid_verify(auth, f"Bearer {wrong_secret(token, i)}", attacker, gate, ran)
    for key in (attacker.key, ("token", rec.id)):
        with pytest.raises(Rejection) as ei:
            auth.guard.check(key)
        assert ei.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert auth.counters()["late_verdicts"] == 5 and auth.pool.pending == 0


async def test_a_success_after_the_deadline_is_cached_for_the_retry(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store, max_queue_wait_seconds=60)
    gate, ran = gated_verifier(auth, True)
    await deadline_mid_verify(auth, f"Bearer {token}", client(), gate, ran)
    p = await auth.authenticate(head(f"Bearer {token}"), client())  # the retry: a cache hit, no Argon2
    assert p.subject == "ops" and len(ran) == 1
