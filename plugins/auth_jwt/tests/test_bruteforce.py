"""Brute-force protection through the JWT authenticator, with a fake monotonic clock: the 6th and
21st attempts, /64 buckets, bans that survive successes. The guard's own tests: tests/kernel/test_guard.py."""

from __future__ import annotations

import ipaddress

import grpc
import pytest

from swqos_core.guard import BruteForceSettings
from swqos_core.layers import ClientAddress

from .authjwt_helpers import attempt, client


def v6(addr: str) -> ClientAddress:
    return ClientAddress(ipaddress.ip_address(addr), "peer", f"ipv6:[{addr}]:443")


@pytest.fixture
def guarded(env):
    def make(**bf):
        return env.auth(brute_force=BruteForceSettings(**bf))
    return make


async def test_sixth_and_twenty_first_attempts_from_one_address(env, guarded):
    auth = guarded()
    verified = []
    inner = auth._step5_signature
    auth._step5_signature = lambda *a: (verified.append(1), inner(*a))[1]  # type: ignore[method-assign]
    bad = env.token(env.stranger)
    cl = client("203.0.113.9")
    for i in range(1, 6):
        r = await attempt(auth, bad, cl)
        assert r.code == grpc.StatusCode.UNAUTHENTICATED and r.label == "step5_signature", i
    assert len(verified) == 5
    r = await attempt(auth, bad, cl)  # 6th: refused without verification, with a retry hint
    assert r.code == grpc.StatusCode.RESOURCE_EXHAUSTED and r.label == "bruteforce_backoff"
    assert r.retry_after is not None and r.retry_after > 0
    assert len(verified) == 5
    good = env.token()
    r = await attempt(auth, good, cl)  # even a valid token waits out the backoff
    assert r.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    for _ in range(8, 21):
        r = await attempt(auth, bad, cl)
    assert r.code == grpc.StatusCode.PERMISSION_DENIED and r.label == "bruteforce_ban"  # the 20th failure bans
    r = await attempt(auth, bad, cl)  # 21st
    assert r.code == grpc.StatusCode.PERMISSION_DENIED and r.label == "bruteforce_ban"
    assert len(verified) == 5
    # other addresses are unaffected
    assert await attempt(auth, good, client("203.0.113.10")) is None


async def test_backoff_grows_and_ends(env, guarded):
    auth = guarded(backoff_base_seconds=1.0)
    bad, good, cl = env.token(env.stranger), env.token(), client("203.0.113.9")
    for _ in range(5):
        await attempt(auth, bad, cl)
    r1 = await attempt(auth, bad, cl)
    assert r1.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    r2 = await attempt(auth, bad, cl)
    assert r2.retry_after > r1.retry_after  # doubling while the client ignores the hint
    env.mono.now += r2.retry_after + 0.01
    assert await attempt(auth, good, cl) is None  # backoff over: a valid token passes and resets it
    r = await attempt(auth, bad, cl)
    assert r.code == grpc.StatusCode.UNAUTHENTICATED  # counting starts again from zero


async def test_failures_forgotten_after_quiet_period(env, guarded):
    auth = guarded(forget_after_seconds=600)
    bad, cl = env.token(env.stranger), client("203.0.113.9")
    for _ in range(4):
        await attempt(auth, bad, cl)
    env.mono.now += 601
    for _ in range(4):
        assert (await attempt(auth, bad, cl)).code == grpc.StatusCode.UNAUTHENTICATED


async def test_many_addresses_of_one_slash64_share_a_bucket(env, guarded):
    auth = guarded()
    bad = env.token(env.stranger)
    codes = [(await attempt(auth, bad, v6(f"2001:db8:1:2::{i:x}"))).code for i in range(1, 22)]
    assert codes[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
    assert codes[5] == grpc.StatusCode.RESOURCE_EXHAUSTED  # 6th, from a fresh /128 of the same /64
    assert codes[20] == grpc.StatusCode.PERMISSION_DENIED  # 21st
    r = await attempt(auth, env.token(), v6("2001:db8:1:2:ffff:ffff:ffff:ffff"))
    assert r.code == grpc.StatusCode.PERMISSION_DENIED
    assert await attempt(auth, env.token(), v6("2001:db8:1:3::1")) is None  # the next /64 is not banned


async def test_ban_survives_success_and_expires(env, guarded):
    auth = guarded(ban_seconds=600)
    bad, good, cl = env.token(env.stranger), env.token(), client("203.0.113.9")
    for _ in range(20):
        await attempt(auth, bad, cl)
    assert (await attempt(auth, good, cl)).code == grpc.StatusCode.PERMISSION_DENIED
    env.mono.now += 599
    assert (await attempt(auth, good, cl)).code == grpc.StatusCode.PERMISSION_DENIED
    env.mono.now += 2
    assert await attempt(auth, good, cl) is None


async def test_ban_needs_20_failures_within_the_window(env, guarded):
    auth = guarded(backoff_after=20, ban_after=20, ban_window_seconds=60)
    bad, cl = env.token(env.stranger), client("203.0.113.9")
    for _ in range(19):
        await attempt(auth, bad, cl)
        env.mono.now += 4  # 19 failures spread over 76 s
    r = await attempt(auth, bad, cl)
    assert r.code != grpc.StatusCode.PERMISSION_DENIED
