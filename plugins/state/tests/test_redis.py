"""The redis store against a real redis-server: credentials, TLS with a CA and an ACL user, two
replicas sharing bans and policy, and an outage that halts signing and recovers by itself."""

from __future__ import annotations

import asyncio

import pytest

from swqos_core.errors import ConfigError
from swqos_core.store import Cell, FailureRule, StoreUnavailable
from swqos_state.redis_store import redact
from swqos_state.testing import PASSWORD

from .helpers import FakeState, redis_store_for

S = 1_000_000_000
RULE = FailureRule(3, 60, 100, 1000, 600)


async def eventually(check, timeout=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def test_redact_hides_the_password():
    assert redact("rediss://swqos:s3cret@db.internal:6380/2") == "rediss://swqos:***@db.internal:6380/2"
    assert redact("redis://:s3cret@[::1]:6379") == "redis://:***@[::1]:6379"
    assert redact("redis://db:6379/0") == "redis://db:6379/0"


async def test_wrong_password_is_a_startup_error_naming_the_url_without_the_password(redis_server, tmp_path):
    bad = tmp_path / "bad.password"
    bad.write_text("not-the-password\n")
    bad.chmod(0o600)
    store = redis_store_for(redis_server, tmp_path, password_file=str(bad))
    with pytest.raises(ConfigError) as ei:
        await store.start()
    text = str(ei.value)
    assert redis_server.url in text and "authentication failed" in text
    assert "not-the-password" not in text and PASSWORD not in text


async def test_password_in_the_url_is_never_printed(redis_server, tmp_path):
    url = f"redis://swqos:wrong-{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    store = redis_store_for(redis_server, tmp_path, url=url, password_file=None)
    with pytest.raises(ConfigError) as ei:
        await store.start()
    assert PASSWORD not in str(ei.value) and "swqos:***@127.0.0.1" in str(ei.value)


def test_an_unauthenticated_redis_is_refused_by_default(redis_server, tmp_path):
    with pytest.raises(ConfigError) as ei:
        redis_store_for(redis_server, tmp_path, password_file=None, username=None)
    assert "unauthenticated" in str(ei.value)


def test_a_password_file_readable_by_others_is_refused(redis_server, tmp_path):
    redis_server.password_file.chmod(0o644)
    with pytest.raises(ConfigError) as ei:
        redis_store_for(redis_server, tmp_path)
    assert "chmod 600" in str(ei.value) and PASSWORD not in str(ei.value)


async def test_unreachable_at_start_refuses_or_starts_not_serving(redis_server, tmp_path):
    redis_server.stop()
    with pytest.raises(ConfigError) as ei:
        await redis_store_for(redis_server, tmp_path).start()
    assert "unreachable" in str(ei.value) and redis_server.url in str(ei.value)

    state = FakeState()
    store = redis_store_for(redis_server, tmp_path, state=state, start_without_store=True)
    await store.start()
    try:
        assert "state_store" in state.halts  # NOT_SERVING until Redis answers
        redis_server.start()
        await eventually(lambda: "state_store" not in state.halts)
        assert (await store.take([Cell("rl:x", S, 0, "x")])).ok
    finally:
        await store.close()


async def test_rediss_with_a_ca_and_an_acl_user(tls_redis_server, tmp_path):
    store = redis_store_for(tls_redis_server, tmp_path)
    await store.start()
    try:
        assert (await store.take([Cell("rl:tls", 3600 * S, 0, "x")])).ok
        rec = await store.put_policy("auth_jwt.revoked", "sub:a", True, "cli")
        assert rec.version == 1
    finally:
        await store.close()


async def test_rediss_without_the_ca_is_refused(tls_redis_server, tmp_path):
    store = redis_store_for(tls_redis_server, tmp_path, ca_file=None)
    with pytest.raises(ConfigError) as ei:
        await store.start()
    assert tls_redis_server.url in str(ei.value)


async def test_two_replicas_share_bans_and_policy_within_a_sync_interval(redis_server, tmp_path):
    a, b = redis_store_for(redis_server, tmp_path), redis_store_for(redis_server, tmp_path)
    await a.start()
    await b.start()
    seen = []
    b.subscribe("auth_jwt.revoked", seen.append)
    try:
        for _ in range(3):
            await a.record_failures([("bf:jwt:9", RULE)])
        await a.put_policy("auth_jwt.revoked", "sub:mallory", True, "token:ops")
        await eventually(lambda: b.ban_remaining("bf:jwt:9") > 0 and seen)
        assert 98 < b.ban_remaining("bf:jwt:9") <= 100
        assert [(r.key, r.actor) for r in seen] == [("sub:mallory", "token:ops")]
        # a third replica that starts later loads both
        c = redis_store_for(redis_server, tmp_path)
        late = []
        c.subscribe("auth_jwt.revoked", late.append)
        await c.start()
        try:
            assert c.ban_remaining("bf:jwt:9") > 98 and [r.key for r in late] == ["sub:mallory"]
        finally:
            await c.close()
    finally:
        await a.close()
        await b.close()


async def test_outage_halts_after_the_grace_and_recovers_without_restart(redis_server, tmp_path):
    state = FakeState()
    store = redis_store_for(redis_server, tmp_path, state=state, grace_seconds=0.3)
    await store.start()
    try:
        redis_server.stop()
        with pytest.raises(StoreUnavailable) as ei:
            await store.take([Cell("rl:x", S, 0, "x")])
        assert PASSWORD not in str(ei.value)
        await eventually(lambda: "state_store" in state.halts)
        assert not store.status().available
        redis_server.start()
        await eventually(lambda: "state_store" not in state.halts)
        assert store.status().available and (await store.take([Cell("rl:y", S, 0, "y")])).ok
    finally:
        await store.close()


async def test_degraded_mode_never_halts(redis_server, tmp_path):
    state = FakeState()
    store = redis_store_for(redis_server, tmp_path, state=state, grace_seconds=0.1, on_failure="degraded")
    await store.start()
    try:
        redis_server.stop()
        await eventually(lambda: store.sync_failures >= 5)
        assert state.halts == {} and store.status().degraded
    finally:
        await store.close()


async def test_take_arguments_kept_ready_stay_bounded_and_decide_nothing(redis_server, tmp_path, monkeypatch):
    from swqos_state import redis_store

    monkeypatch.setattr(redis_store, "MAX_REMEMBERED_CELLS", 4)
    store = redis_store_for(redis_server, tmp_path)
    await store.start()
    try:
        hour = 3600 * S
        spent = Cell("t:memo:spent", hour, 0, "hs")
        assert (await store.take([spent])).ok
        for i in range(20):  # new cells: the remembered arguments are dropped and rebuilt meanwhile
            assert (await store.take([Cell(f"t:memo:{i}", hour, 0, "hs")])).ok
            assert len(store._cell_args) <= 4
        refused = await store.take([spent])  # the server's cell decides, not the memo
        assert (refused.ok, refused.label) == (False, "hs") and refused.wait_ns > 0
        # Same key, another quota: its arguments are its own (the memo is keyed by the whole Cell).
        assert (await store.take([Cell("t:memo:spent", 1, hour, "hs")])).ok
    finally:
        await store.close()
