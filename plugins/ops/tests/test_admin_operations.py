"""Each admin operation end to end through the real stack: the change applies to the next request."""

from __future__ import annotations

import grpc

from swqos_core import __version__
from swqos_core.identity import to_base58
from swqos_ops.testing import admin, ops_config
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack


async def test_status_reports_identity_enclave_counter_and_plugins(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        assert (await stack.sign(valid_cv())).code == grpc.StatusCode.OK
        status, doc = await admin(stack, token, "status")
        assert status == 200, doc
        assert doc["version"] == __version__
        assert doc["identity"] == to_base58(stack.identity_key)
        assert doc["enclave"]["reachable"] is True
        assert doc["signatures"]["enclave_reported"] == await stack.signatures_made() == 1
        assert doc["signatures"]["host_returned_since_start"] == 1
        assert doc["halted"] is False and doc["halt_reasons"] == {} and doc["draining"] is False
        names = {p["name"]: p for p in doc["plugins"]}
        assert {"builtin", "auth_jwt", "ratelimit"} <= set(names)
        assert names["auth_jwt"]["distribution"] == "swqos-auth-jwt"
        assert doc["layers"]["auth"] == ["jwt"]


async def test_status_says_enclave_unreachable(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        await stack.kill_enclave()
        await stack.wait_serving(False)
        status, doc = await admin(stack, token, "status")
        assert status == 200
        assert doc["enclave"]["reachable"] is False
        assert doc["serving"] is False and doc["not_serving_reason"] == "enclave unreachable"


async def test_revoke_and_restore_trader(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        alice = stack.token("alice")
        assert (await stack.sign(valid_cv(), token=alice)).code == grpc.StatusCode.OK
        status, doc = await admin(stack, token, "revoke-trader", {"sub": "alice"})
        assert status == 200 and doc["layers"] == ["auth.jwt"], doc
        before = await stack.signatures_made()
        r = await stack.sign(valid_cv(), token=alice)
        assert r.code == grpc.StatusCode.PERMISSION_DENIED and "revoked" in r.details
        r = await stack.sign(valid_cv(), token=stack.token("alice"))  # a fresh token of the same trader
        assert r.code == grpc.StatusCode.PERMISSION_DENIED
        assert await stack.signatures_made() == before
        assert (await stack.sign(valid_cv(), token=stack.token("bob"))).code == grpc.StatusCode.OK

        status, doc = await admin(stack, token, "restore-trader", {"sub": "alice"})
        assert status == 200, doc
        assert (await stack.sign(valid_cv(), token=alice)).code == grpc.StatusCode.OK
        status, doc = await admin(stack, token, "restore-trader", {"sub": "alice"})
        assert status == 409 and "not revoked" in doc["error"]


async def test_unknown_trader_is_a_clear_error_unless_forced(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        for op, body in (("revoke-trader", {"sub": "nobody"}),
                         ("set-allowlist", {"sub": "nobody", "cidrs": ["10.0.0.0/8"]}),
                         ("set-quota", {"sub": "nobody", "rate": {"count": 1}})):
            status, doc = await admin(stack, token, op, body)
            assert status == 404, (op, doc)
            assert "unknown trader 'nobody'" in doc["error"] and "force" in doc["error"]
        status, doc = await admin(stack, token, "revoke-trader", {"sub": "nobody", "force": True})
        assert status == 200, doc
        # The forced revocation is in force from the trader's first request on.
        r = await stack.sign(valid_cv(), token=stack.token("nobody"))
        assert r.code == grpc.StatusCode.PERMISSION_DENIED
        status, doc = await admin(stack, token, "trader", {"sub": "nobody"})
        assert status == 200 and doc["known"] is True and doc["seen"] is False
        assert doc["policy"]["auth_jwt"]["revoked"] is True
        assert doc["policy"]["ratelimit"]["quota"]["rate_limit.gcra"]["source"] == "default"


async def test_revoke_and_restore_token(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        leaked = stack.token("carol", jti="leaked-jti-1")
        other = stack.token("carol")
        assert (await stack.sign(valid_cv(), token=leaked)).code == grpc.StatusCode.OK
        status, doc = await admin(stack, token, "revoke-token", {"jti": "leaked-jti-1"})
        assert status == 200, doc
        r = await stack.sign(valid_cv(), token=leaked)
        assert r.code == grpc.StatusCode.UNAUTHENTICATED and "token revoked" in r.details
        assert (await stack.sign(valid_cv(), token=other)).code == grpc.StatusCode.OK
        status, _ = await admin(stack, token, "restore-token", {"jti": "leaked-jti-1"})
        assert status == 200
        assert (await stack.sign(valid_cv(), token=leaked)).code == grpc.StatusCode.OK
        status, doc = await admin(stack, token, "restore-token", {"jti": "never-revoked"})
        assert status == 409 and "not revoked" in doc["error"]


async def test_set_allowlist_applies_to_next_request(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        dave = stack.token("dave")
        assert (await stack.sign(valid_cv(), token=dave)).code == grpc.StatusCode.OK
        status, doc = await admin(stack, token, "set-allowlist", {"sub": "dave", "cidrs": ["203.0.113.0/24"]})
        assert status == 200, doc
        before = await stack.signatures_made()
        r = await stack.sign(valid_cv(), token=dave)  # the test calls from 127.0.0.1
        assert r.code == grpc.StatusCode.PERMISSION_DENIED and "allowlist" in r.details
        assert await stack.signatures_made() == before
        status, _ = await admin(stack, token, "set-allowlist", {"sub": "dave", "cidrs": ["127.0.0.0/8"]})
        assert status == 200
        assert (await stack.sign(valid_cv(), token=dave)).code == grpc.StatusCode.OK
        status, doc = await admin(stack, token, "set-allowlist", {"sub": "dave", "cidrs": ["10.0.0.1/8"]})
        assert status == 400 and "invalid allowlist" in doc["error"]
        status, _ = await admin(stack, token, "set-allowlist", {"sub": "dave", "cidrs": None})
        assert status == 200


async def test_set_and_clear_quota(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        erin = stack.token("erin")
        status, doc = await admin(stack, token, "set-quota",
                                  {"sub": "erin", "rate": {"count": 1, "period": 3600, "burst": 1}, "force": True})
        assert status == 200, doc
        assert doc["quota"]["rate_limit.gcra"]["source"] == "runtime"
        # One call an hour, burst 1: the first call spends it, the very next one is refused.
        assert (await stack.sign(valid_cv(), token=erin)).code == grpc.StatusCode.OK
        before = await stack.signatures_made()
        r = await stack.sign(valid_cv(), token=erin)
        assert r.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry-after" in r.trailing
        assert await stack.signatures_made() == before
        assert (await stack.sign(valid_cv(), token=stack.token("frank"))).code == grpc.StatusCode.OK
        status, doc = await admin(stack, token, "set-quota", {"sub": "erin", "rate": {"count": -1}})
        assert status == 400 and "invalid quota" in doc["error"]
        status, doc = await admin(stack, token, "clear-quota", {"sub": "erin"})
        assert status == 200 and doc["cleared"] == ["rate_limit.gcra"]
        status, doc = await admin(stack, token, "clear-quota", {"sub": "erin"})
        assert status == 409


async def test_drain_and_undrain(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        status, doc = await admin(stack, token, "drain")
        assert status == 200 and doc["draining"] is True
        r = await stack.sign(valid_cv())
        assert r.code == grpc.StatusCode.UNAVAILABLE and "draining" in r.details
        assert await stack.signatures_made() == 0
        status, health = await admin(stack, None, "/healthz")
        assert status == 503 and health == {"serving": False, "reason": "draining"}
        status, _ = await admin(stack, token, "undrain")
        assert status == 200
        assert (await stack.sign(valid_cv())).code == grpc.StatusCode.OK
        assert await admin(stack, None, "/healthz") == (200, {"serving": True, "reason": None})


async def test_a_plugins_operation_applies_to_the_next_request(tmp_path, admin_store, ops_fakes):
    """An operation a plugin registers (here the fakes' CDN reload) is served like the listener's own."""
    store, token = admin_store
    cfg = ops_config(tmp_path, store, test_plugins=True,
                     pipeline={"client_ip": ["fake_cdn", "peer"], "rate_limit": []}, layers={})
    async with running_stack(tmp_path, proxy=cfg, extra_plugins=[ops_fakes]) as stack:
        cdn = stack.proxy.app.one("client_ip")
        gina = stack.token("gina")
        await stack.sign(valid_cv(), token=gina)  # makes gina known
        status, _ = await admin(stack, token, "set-allowlist", {"sub": "gina", "cidrs": ["198.51.100.0/24"]})
        assert status == 200
        assert (await stack.sign(valid_cv(), token=gina)).code == grpc.StatusCode.PERMISSION_DENIED
        status, doc = await admin(stack, token, "reload-fake-cdn")
        assert status == 200, doc
        assert doc["changed"] is True and cdn.reloads == 1
        assert (await stack.sign(valid_cv(), token=gina)).code == grpc.StatusCode.OK
        status, doc = await admin(stack, token, "operations")
        owners = {op["name"]: op["owner"] for op in doc["operations"]}
        assert owners["reload-fake-cdn"] == "ops_fakes" and owners["set-allowlist"] == "auth_jwt"
        assert owners["drain"] == "ops"


async def test_operation_of_a_plugin_not_loaded_is_unknown(tmp_path, admin_store):
    store, token = admin_store
    # No rate limiter loaded: its operations do not exist here, and the answer lists what does.
    cfg = ops_config(tmp_path, store, plugins=["auth_jwt"], pipeline={"rate_limit": []}, layers={})
    async with running_stack(tmp_path, proxy=cfg) as stack:
        await stack.sign(valid_cv(), token=stack.token("henry"))
        status, doc = await admin(stack, token, "set-quota", {"sub": "henry", "rate": {"count": 5}})
        assert status == 404 and "unknown operation 'set-quota'" in doc["error"]
        assert "set-quota" not in doc["operations"] and "revoke-trader" in doc["operations"]
        status, doc = await admin(stack, token, "trader", {"sub": "henry"})
        assert status == 200 and set(doc["policy"]) == {"auth_jwt"}


async def test_bad_requests(tmp_path, admin_store):
    store, token = admin_store
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        status, doc = await admin(stack, token, "no-such-op")
        assert status == 404 and "revoke-trader" in doc["operations"]
        status, _ = await admin(stack, token, "revoke-trader", method="GET")
        assert status == 405
        status, doc = await admin(stack, token, "revoke-trader", {"sub": "x", "bogus": 1})
        assert status == 400 and "bogus" in doc["error"]
        status, doc = await admin(stack, token, "revoke-trader", {"sub": ""})
        assert status == 400
        status, doc = await admin(stack, token, "revoke-trader", {"sub": "x", "force": "yes"})
        assert status == 400
