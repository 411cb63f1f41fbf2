"""Admin revocations and allowlists as policy records: written to the store first, applied when the
store delivers them (here and, through a shared store, on every replica)."""

from __future__ import annotations

import ipaddress

import pytest

from swqos_auth_jwt.policy import ALLOWLIST_NAMESPACE, REVOKED_NAMESPACE, Allowlist, RevocationFile, Revocations, StoredPolicy
from swqos_core.store import MemoryStateStore, StoreUnavailable


def policy(store=None):
    rev, allow, purged = Revocations(), Allowlist(), []
    p = StoredPolicy(rev, allow, store or MemoryStateStore(), lambda kind, ident: purged.append((kind, ident)))
    return p, rev, allow, purged


async def test_revoke_and_restore_are_records_with_their_actor():
    store = MemoryStateStore()
    p, rev, _, purged = policy(store)
    await p.revoke("sub", "alice", "token:ops (t1)")
    assert rev.subject_revoked("alice") and purged == [("sub", "alice")]
    [rec] = await store.policy_records(REVOKED_NAMESPACE)
    assert (rec.key, rec.value, rec.actor) == ("sub:alice", True, "token:ops (t1)")
    assert await p.restore("sub", "alice", "token:ops (t1)") is True
    assert not rev.subject_revoked("alice") and await store.policy_records(REVOKED_NAMESPACE) == []


async def test_restore_reports_a_revocation_the_file_still_holds():
    p, rev, _, _ = policy()
    rev.file = RevocationFile(jti=frozenset({"j1"}))
    await p.revoke("jti", "j1", "cli")
    assert await p.restore("jti", "j1", "cli") is False
    assert rev.token_revoked("j1")


async def test_allowlist_records_and_bad_cidrs_write_nothing():
    store = MemoryStateStore()
    p, _, allow, _ = policy(store)
    await p.set_allowlist("bob", ["203.0.113.0/24"], "cli")
    assert allow.allows("bob", ipaddress.ip_address("203.0.113.9"))
    assert not allow.allows("bob", ipaddress.ip_address("198.51.100.1"))
    with pytest.raises(ValueError):
        await p.set_allowlist("bob", ["10.0.0.1/24"], "cli")  # host bits: a typo
    [rec] = await store.policy_records(ALLOWLIST_NAMESPACE)
    assert rec.value == ["203.0.113.0/24"]
    await p.set_allowlist("bob", None, "cli")
    assert allow.networks("bob") is None


async def test_bad_identifiers_are_refused():
    p, _, _, _ = policy()
    for kind, ident in (("sub", ""), ("sub", "a\nb"), ("nope", "x"), ("jti", "x" * 300)):
        with pytest.raises(ValueError):
            await p.revoke(kind, ident, "cli")


async def test_a_store_that_cannot_write_applies_nothing():
    class Down(MemoryStateStore):
        async def put_policy(self, *a, **k):
            raise StoreUnavailable("down")

    p, rev, _, _ = policy(Down())
    with pytest.raises(StoreUnavailable):
        await p.revoke("sub", "carol", "cli")
    assert not rev.subject_revoked("carol")
