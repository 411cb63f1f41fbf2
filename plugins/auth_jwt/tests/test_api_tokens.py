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
from authjwt_helpers import FakeClock, client, head

from swqos_auth_jwt import api_tokens
from swqos_auth_jwt.api_tokens import ApiTokenAuthenticator, ApiTokenSettings, create_token, revoke_token
from swqos_auth_jwt.bruteforce import BruteForceSettings
from swqos_core.errors import ConfigError, Rejection


@pytest.fixture
def store(tmp_path):
    return tmp_path / "tokens.json"


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
    auth = make(store, brute_force=BruteForceSettings(backoff_after=1000, ban_after=1000))
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
    clock.t += 61
    await auth.authenticate(head(f"Bearer {token}"), client())
    assert len(spy.calls) == 2


async def test_revocation_reaches_cached_tokens(store):
    token, rec = create_token(store, "ops", "admin")
    mono = FakeClock(0.0)
    auth = make(store, mono=mono)
    await auth.authenticate(head(f"Bearer {token}"), client())
    assert revoke_token(store, "ops") == [rec.id]
    mono.t += 2
    r = await outcome(auth, f"Bearer {token}")
    assert r.code == grpc.StatusCode.UNAUTHENTICATED and r.label == "api_token_unknown"
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    assert [t["revoked"] for t in auth.state()["tokens"]] == [True]


async def test_expiring_token(store):
    token, _ = create_token(store, "ops", "admin", ttl=100)
    clock = FakeClock(api_tokens.read_store(store).popitem()[1].created_at + 50)
    auth = make(store, clock=clock)
    assert (await auth.authenticate(head(f"Bearer {token}"), client())).expires_at is not None
    clock.t += 60
    r = await outcome(auth, f"Bearer {token}")
    assert r.code == grpc.StatusCode.UNAUTHENTICATED


async def test_concurrency_cap(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store, max_concurrent_verifications=2, max_waiting_verifications=1,
                brute_force=BruteForceSettings(backoff_after=1000, ban_after=1000))
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


async def test_brute_force_guard_before_hashing(store):
    token, _ = create_token(store, "ops", "admin")
    auth = make(store)
    spy = Spy(auth)
    wrong = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    codes = [(await outcome(auth, f"Bearer {wrong}")).code for _ in range(6)]
    assert codes[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
    assert codes[5] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(spy.calls) == 5


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
