"""Verified-token cache, revocation (admin API and watched file), IP allowlist, config loading."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import grpc
import pytest

from swqos_auth_jwt.jwt_auth import JwtAuthenticator, JwtKeySettings, JwtSettings
from swqos_core import schema
from swqos_core.errors import ConfigError, Rejection
from swqos_core.layers import ClientAddress

from .authjwt_helpers import AUDIENCE, HEADER, ISSUER, NOW, bearer, client, write_pub


class Counter:
    def __init__(self, auth: JwtAuthenticator) -> None:
        self.n = 0
        inner = auth._step5_signature

        def counting(*a):
            self.n += 1
            return inner(*a)

        auth._step5_signature = counting  # type: ignore[method-assign]


async def code_of(auth, tok, cl=None) -> grpc.StatusCode | None:
    try:
        await auth.authenticate(bearer(tok), cl or client())
    except Rejection as r:
        return r.code
    return None


def write_json(path: Path, doc) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)  # atomic, new inode: what a careful writer does


# --- cache -------------------------------------------------------------------------------------


async def test_cache_hit_skips_the_signature(env):
    auth = env.auth()
    c = Counter(auth)
    tok = env.token()
    for _ in range(5):
        assert (await auth.authenticate(bearer(tok), client())).subject == "trader-1"
    assert c.n == 1
    assert len(auth.cache) == 1


@pytest.mark.parametrize("high_first", [False, True])
async def test_high_s_twin_shares_the_one_cache_entry(env, high_first):
    from swqos_auth_jwt.jwt_auth import P256_N
    from swqos_auth_jwt.strict import b64url_decode, b64url_encode

    tok = env.token()
    h, c_, sig = tok.split(".")
    raw = b64url_decode(sig)
    s = int.from_bytes(raw[32:], "big")
    twin = f"{h}.{c_}.{b64url_encode(raw[:32] + (P256_N - s).to_bytes(32, 'big'))}"  # (r, n - s) of a real one
    low, high = (tok, twin) if s <= P256_N // 2 else (twin, tok)
    auth = env.auth()
    c = Counter(auth)
    for t in ((high, low) if high_first else (low, high)) * 3:
        assert (await auth.authenticate(bearer(t), client())).token_id == "jti-1"
    assert c.n == 1  # one ES256 verification for both spellings
    assert list(auth.cache._d) == [f"Bearer {low}"]  # and one entry, under the low-s spelling


async def test_cache_entry_expires_at_exp(env):
    auth = env.auth()
    c = Counter(auth)
    tok = env.token()
    await auth.authenticate(bearer(tok), client())
    env.clock.now = NOW + 299
    await auth.authenticate(bearer(tok), client())
    assert c.n == 1
    env.clock.now = NOW + 300  # at exp the entry is gone; within leeway the full path still accepts
    await auth.authenticate(bearer(tok), client())
    assert c.n == 2
    env.clock.now = NOW + 331
    assert await code_of(auth, tok) == grpc.StatusCode.UNAUTHENTICATED


async def test_cache_entry_never_outlives_its_key(env):
    write_pub(env.tmp / "k1.pem", env.k1)
    auth = env.auth(keys={"k1": JwtKeySettings(env.tmp / "k1.pem", not_after=NOW + 100)})
    c = Counter(auth)
    tok = env.token()
    await auth.authenticate(bearer(tok), client())
    env.clock.now = NOW + 100
    assert await code_of(auth, tok) == grpc.StatusCode.UNAUTHENTICATED
    assert c.n == 1  # refused at step 4, before the signature


async def test_cache_is_bounded(env):
    auth = env.auth(cache_size=3)
    for i in range(10):
        await auth.authenticate(bearer(env.token(jti=f"j{i}")), client())
    assert len(auth.cache) == 3


async def test_cache_size_zero_disables_it(env):
    auth = env.auth(cache_size=0)
    c = Counter(auth)
    tok = env.token()
    await auth.authenticate(bearer(tok), client())
    await auth.authenticate(bearer(tok), client())
    assert c.n == 2 and len(auth.cache) == 0


async def test_failures_are_not_cached(env):
    auth = env.auth()
    tok = env.token(env.stranger)
    for _ in range(3):
        assert await code_of(auth, tok) == grpc.StatusCode.UNAUTHENTICATED
    assert len(auth.cache) == 0


@pytest.mark.parametrize("revoke", ["subject", "token", "key"])
async def test_revocation_applies_to_cached_tokens(env, revoke):
    auth = env.auth()
    tok = env.token()
    await auth.authenticate(bearer(tok), client())
    {"subject": lambda: auth.revoke_subject("trader-1"), "token": lambda: auth.revoke_token("jti-1"),
     "key": lambda: auth.revoke_key("k1")}[revoke]()
    assert len(auth.cache) == 0
    # A revoked trader's authentic token is not allowed; a revoked token or key is no credential.
    expected = grpc.StatusCode.PERMISSION_DENIED if revoke == "subject" else grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(auth, tok) == expected


async def test_revocation_checked_on_hit_even_if_cache_was_not_purged(env):
    auth = env.auth()
    tok = env.token()
    await auth.authenticate(bearer(tok), client())
    auth.revocations.sub.add("trader-1")  # bypass the purge: the per-request check alone must refuse
    assert len(auth.cache) == 1
    assert await code_of(auth, tok) == grpc.StatusCode.PERMISSION_DENIED


async def test_key_revocation_keeps_other_keys_cached(env):
    auth = env.auth()
    await auth.authenticate(bearer(env.token()), client())
    await auth.authenticate(bearer(env.token(env.k2, header={**HEADER, "kid": "k2"}, jti="j2")), client())
    auth.revoke_key("k1")
    assert len(auth.cache) == 1


# --- revocation file -----------------------------------------------------------------------------


async def test_revocation_file_is_reloaded_without_restart(env):
    path = env.tmp / "revoked.json"
    write_json(path, {"sub": ["trader-1"]})
    auth = env.auth(revocation_file=path, reload_interval_seconds=1.0)
    tok = env.token()
    assert await code_of(auth, tok) == grpc.StatusCode.PERMISSION_DENIED
    write_json(path, {"sub": [], "jti": ["jti-2"]})
    env.mono.now += 1.5
    assert await code_of(auth, tok) is None
    write_json(path, {"jti": ["jti-1"]})  # now revoke the cached token by jti
    assert await code_of(auth, tok) is None  # not yet re-checked: interval not passed
    env.mono.now += 1.5
    assert await code_of(auth, tok) == grpc.StatusCode.UNAUTHENTICATED


async def test_revocation_file_kid_purges_cache(env):
    path = env.tmp / "revoked.json"
    write_json(path, {})
    auth = env.auth(revocation_file=path)
    tok = env.token()
    await auth.authenticate(bearer(tok), client())
    write_json(path, {"kid": ["k1"]})
    env.mono.now += 2
    assert await code_of(auth, tok) == grpc.StatusCode.UNAUTHENTICATED
    assert len(auth.cache) == 0


async def test_broken_revocation_file_keeps_the_last_good_list(env):
    path = env.tmp / "revoked.json"
    write_json(path, {"sub": ["trader-1"]})
    auth = env.auth(revocation_file=path)
    path.write_text('{"sub": ["trader-1"')  # half-written
    env.mono.now += 2
    assert await code_of(auth, env.token()) == grpc.StatusCode.PERMISSION_DENIED
    path.unlink()
    env.mono.now += 2
    assert await code_of(auth, env.token()) == grpc.StatusCode.PERMISSION_DENIED


async def test_file_entry_is_not_lifted_by_the_admin_api(env):
    path = env.tmp / "revoked.json"
    write_json(path, {"sub": ["trader-1"]})
    auth = env.auth(revocation_file=path)
    assert auth.restore_subject("trader-1") is False
    assert await code_of(auth, env.token()) == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("content", ['{"sub": "trader-1"}', '{"subs": []}', "[]", '{"sub": [""]}', "nope",
                                    '{"sub": [], "sub": ["x"]}'])
def test_bad_revocation_file_at_startup_is_a_config_error(env, content):
    path = env.tmp / "revoked.json"
    path.write_text(content)
    with pytest.raises(ConfigError):
        env.auth(revocation_file=path)


def test_missing_revocation_file_at_startup_is_a_config_error(env):
    with pytest.raises(ConfigError):
        env.auth(revocation_file=env.tmp / "absent.json")


# --- allowlist -----------------------------------------------------------------------------------


async def test_allowlist_refuses_outside_addresses(env):
    auth = env.auth()
    tok = env.token()
    assert await code_of(auth, tok) is None  # no list yet: anywhere
    auth.set_allowlist("trader-1", ["203.0.113.0/24", "2001:db8:1::/48"])
    for ip, expected in [("198.51.100.7", grpc.StatusCode.PERMISSION_DENIED), ("203.0.113.200", None),
                         ("203.0.114.1", grpc.StatusCode.PERMISSION_DENIED), ("2001:db8:1:ffff::1", None),
                         ("2001:db8:2::1", grpc.StatusCode.PERMISSION_DENIED), ("::ffff:203.0.113.5", None)]:
        assert await code_of(auth, tok, client(ip) if ":" not in ip else
                             ClientAddress(ipaddress.ip_address(ip), "peer", "x")) == expected, ip


async def test_allowlist_checked_on_cache_hit(env):
    auth = env.auth()
    c = Counter(auth)
    tok = env.token()
    auth.set_allowlist("trader-1", ["198.51.100.0/24"])
    assert await code_of(auth, tok) is None
    assert await code_of(auth, tok, client("192.0.2.1")) == grpc.StatusCode.PERMISSION_DENIED
    assert c.n == 1


async def test_allowlist_runtime_updates(env):
    auth = env.auth()
    tok = env.token()
    auth.set_allowlist("trader-1", [])
    assert await code_of(auth, tok) == grpc.StatusCode.PERMISSION_DENIED
    auth.set_allowlist("trader-1", None)
    assert await code_of(auth, tok) is None
    assert auth.state()["allowlist"] == {}
    with pytest.raises(ValueError):
        auth.set_allowlist("trader-1", ["10.0.0.1/24"])  # host bits set: a typo, not a network
    with pytest.raises(ValueError):
        auth.set_allowlist("trader-1", "10.0.0.0/8")  # type: ignore[arg-type]


async def test_allowlist_required_and_non_ip_clients(env):
    auth = env.auth(allowlist_required=True)
    tok = env.token()
    assert await code_of(auth, tok) == grpc.StatusCode.PERMISSION_DENIED
    auth.set_allowlist("trader-1", ["0.0.0.0/0"])
    assert await code_of(auth, tok) is None
    unix = ClientAddress(None, "peer", "unix:/run/x")
    assert await code_of(auth, tok, unix) == grpc.StatusCode.PERMISSION_DENIED


async def test_allowlist_file_and_admin_override(env):
    path = env.tmp / "allow.json"
    write_json(path, {"trader-1": ["192.0.2.0/24"]})
    auth = env.auth(allowlist_file=path)
    tok = env.token()
    assert await code_of(auth, tok) == grpc.StatusCode.PERMISSION_DENIED
    write_json(path, {"trader-1": ["198.51.100.0/24"]})  # the marketplace pushes a new list
    env.mono.now += 2
    assert await code_of(auth, tok) is None
    auth.set_allowlist("trader-1", ["192.0.2.0/24"])  # admin override wins over the file
    assert await code_of(auth, tok) == grpc.StatusCode.PERMISSION_DENIED
    auth.set_allowlist("trader-1", None)
    assert await code_of(auth, tok) is None


def test_state_lists_everything_without_secrets(env):
    auth = env.auth()
    auth.revoke_subject("s1")
    auth.revoke_token("j1")
    auth.set_allowlist("s2", ["10.0.0.0/8"])
    st = auth.state()
    assert st["revoked"] == {"sub": ["s1"], "jti": ["j1"], "kid": []}
    assert st["allowlist"] == {"s2": ["10.0.0.0/8"]}
    assert set(st["keys"]) == {"k1", "k2", "p1"} and st["keys"]["p1"]["role"] == "probe"
    json.dumps(st)  # serialisable for the admin API


# --- configuration -------------------------------------------------------------------------------


def test_dev_stack_config_shape_parses(env):
    write_pub(env.tmp / "issuer.pub.pem", env.k1)
    problems: list[str] = []
    s = schema.build(JwtSettings, {"issuer": ISSUER, "audience": AUDIENCE,
                                   "keys": {"dev-1": {"public_key": "issuer.pub.pem"}}},
                     where="[layers.auth.jwt]", base_dir=env.tmp, problems=problems)
    assert problems == []
    assert s.keys["dev-1"].public_key == env.tmp / "issuer.pub.pem"
    auth = JwtAuthenticator(s)
    assert set(auth.state()["keys"]) == {"dev-1"}


@pytest.mark.parametrize("over,needle", [
    ({"leeway_seconds": 31}, "leeway"), ({"max_lifetime_seconds": 0}, "max_lifetime"),
    ({"unknown_key": 1}, "unknown key"), ({"keys": {"k 1": {"public_key": "k1.pem"}}}, "kid"),
    ({"keys": {"k1": {"public_key": "missing.pem"}}}, "cannot load"),
    ({"probe_keys": {"p1": {"public_key": "k1.pem"}}}, "probe_issuer"),
    ({"probe_issuer": "x", "probe_keys": {"k1": {"public_key": "k1.pem"}}}, "both"),
    ({"keys": {"k1": {"public_key": "k1.pem", "not_after": "2027-01-01"}}}, "offset"),
    ({"keys": {"k1": {"public_key": "rsa.pem"}}}, "P-256"),
])
def test_config_problems(env, over, needle):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    write_pub(env.tmp / "k1.pem", env.k1)
    (env.tmp / "rsa.pem").write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
                                      .public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    data = {"issuer": ISSUER, "audience": AUDIENCE, "keys": {"k1": {"public_key": "k1.pem"}}, **over}
    problems: list[str] = []
    s = schema.build(JwtSettings, data, where="[layers.auth.jwt]", base_dir=env.tmp, problems=problems)
    if not problems:
        with pytest.raises(ConfigError) as ei:
            JwtAuthenticator(s)
        problems = ei.value.problems
    assert any(needle in p for p in problems), problems


def test_plugin_registers_both_authenticators():
    from swqos_auth_jwt import plugin
    seen = {}
    plugin.swqos_register_authenticators(lambda name, factory, config=None, **kw: seen.setdefault(name, config))
    assert set(seen) == {"jwt", "api_token"}


def test_cache_counts_hits_and_misses():
    from swqos_auth_jwt.cache import ExpiringCache

    cache: ExpiringCache[str] = ExpiringCache(4)
    assert cache.get("a", now=0.0) is None
    cache.put("a", "v", until=10.0, now=0.0)
    assert cache.get("a", now=1.0) == "v"
    assert cache.get("a", now=10.0) is None  # expired
    assert (cache.hits, cache.misses) == (1, 2)
