"""Others' failures from a shared address never lock out a token already proven valid."""

from __future__ import annotations

import grpc

from swqos_core.guard import BruteForceSettings

from .authjwt_helpers import attempt, client


async def test_a_verified_token_keeps_working_from_an_address_others_got_banned(env):
    auth = env.auth(brute_force=BruteForceSettings())
    shared = client("203.0.113.9")  # one NAT: the trader and an attacker behind it
    good = env.token()
    assert await attempt(auth, good, shared) is None  # verified once, now cached
    bad = env.token(env.stranger)
    for _ in range(25):
        await attempt(auth, bad, shared)
    refused = await attempt(auth, bad, shared)
    assert refused is not None and refused.code == grpc.StatusCode.PERMISSION_DENIED and refused.label == "bruteforce_ban"
    assert await attempt(auth, good, shared) is None  # the trader's token still signs in
    fresh = env.token(sub="bob")
    blocked = await attempt(auth, fresh, shared)  # an unverified token from the banned address costs no ES256
    assert blocked is not None and blocked.code == grpc.StatusCode.PERMISSION_DENIED
