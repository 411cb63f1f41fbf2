"""Threshold manifests and the trust root, driven through the engine (no transport).

Each bad input of issue 17 is refused with its own label and leaves the state as it was: a halt
stays a halt, a serving proxy keeps serving, the trusted root keeps its version.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from swqos_killswitch.bundle import dump_bundle
from swqos_killswitch.engine import Candidate, KillSwitch
from swqos_killswitch.signing import MAX_SIGNATURE_BYTES, key_id, sign_blob
from swqos_killswitch.store import ManifestStore, RootChainStore
from swqos_killswitch.trust import RootTrust, verify_first_root

RELEASE = "1.3.1"


def engine(kit, root, tmp_path, *, state=None, clock=None, on_stale="halt", name="t") -> KillSwitch:
    trust = RootTrust([verify_first_root(root.data, root.sig, root.sha256)])
    kw = {"clock": clock} if clock else {}
    ks = KillSwitch(state=state or kit.make_state(), trust=trust, scope=kit.SCOPE,
                    store=ManifestStore(tmp_path / "state", name), root_store=RootChainStore(tmp_path / "state", name),
                    on_stale=on_stale, **kw)
    ks.restore()
    return ks


def cand(pair, origin="test") -> Candidate:
    return Candidate(origin, *pair)


@pytest.fixture
def halted(kit, root, tmp_path):
    """An engine that accepted a 2-of-3 v5 halting this release."""
    ks = engine(kit, root, tmp_path)
    assert ks.poll_result([cand(root.manifest(5, revoked_versions=[RELEASE]))]) == "accepted"
    assert not ks.state.serving
    return ks


@pytest.fixture
def serving(kit, root, tmp_path):
    ks = engine(kit, root, tmp_path)
    assert ks.poll_result([cand(root.manifest(5, revoked_versions=["0.0.1"]))]) == "accepted"
    assert ks.state.serving
    return ks


def assert_kept(ks, *, version=5, serving=None):
    assert ks.manifest_version == version
    if serving is not None:
        assert ks.state.serving is serving
    assert ks.store.load().version == version


def test_threshold_halt_is_accepted_and_reports_its_signers(kit, root, tmp_path):
    ks = engine(kit, root, tmp_path)
    assert ks.poll_result([cand(root.manifest(1, by=[0, 2], revoked_versions=[RELEASE]))]) == "accepted"
    assert not ks.state.serving and "is revoked" in ks.state.halt_reasons["kill_switch"]
    snap = ks.snapshot()
    assert snap["signed_by"] == [key_id(root.manifest_keys[0].public_key()), key_id(root.manifest_keys[2].public_key())]
    assert snap["trust"]["mode"] == "root" and snap["trust"]["halt_threshold"] == 2
    assert snap["last_verification"]["halt_threshold_met"] and not snap["last_verification"]["lift_threshold_met"]
    assert ks.store.load().root_version == 1


def test_below_threshold_halt_is_refused_and_serving_continues(serving, root):
    assert serving.poll_result([cand(root.manifest(6, by=[1], revoked_versions=[RELEASE]))]) == "no_valid_manifest"
    assert serving.rejected_total["below_threshold"] == 1
    assert_kept(serving, serving=True)


def test_below_threshold_cannot_touch_a_halt(halted, root):
    before = halted.state.halt_reasons["kill_switch"]
    assert halted.poll_result([cand(root.manifest(6, by=[2]))]) == "no_valid_manifest"
    assert halted.rejected_total["below_threshold"] == 1
    assert halted.state.halt_reasons["kill_switch"] == before
    assert_kept(halted, serving=False)


def test_same_signer_twice_counts_once(serving, root):
    a = root.manifest_keys[0]
    pair = root.manifest(6, signers=[a, a], revoked_versions=[RELEASE])
    assert serving.poll_result([cand(pair)]) == "no_valid_manifest"
    assert serving.rejected_total["below_threshold"] == 1
    assert serving.ignored_signatures_total["duplicate_signer"] == 1
    assert_kept(serving, serving=True)
    # With a second distinct signer it is a valid halt, and the duplicate is still reported.
    b = root.manifest_keys[1]
    assert serving.poll_result([cand(root.manifest(7, signers=[a, a, b], revoked_versions=[RELEASE]))]) == "accepted"
    assert len(serving.signed_by) == 2 and serving.ignored_signatures_total["duplicate_signer"] == 2
    assert not serving.state.serving


def test_key_outside_the_root_is_ignored_and_reported(serving, root, kit, tmp_path):
    outsider = kit.make_keys(tmp_path / "outsider").private
    a, b = root.manifest_keys[:2]
    assert serving.poll_result([cand(root.manifest(6, signers=[a, outsider], revoked_versions=[RELEASE]))]) \
        == "no_valid_manifest"
    assert serving.rejected_total["below_threshold"] == 1 and serving.ignored_signatures_total["unknown_key"] == 1
    assert_kept(serving, serving=True)
    assert serving.poll_result([cand(root.manifest(7, signers=[outsider, a, b]))]) == "accepted"
    ignored = serving.snapshot()["last_verification"]["ignored"]
    assert ignored == [{"keyid": key_id(outsider.public_key()), "reason": "unknown_key"}]


def test_root_key_cannot_sign_a_manifest(serving, root):
    pair = root.manifest(6, signers=[root.manifest_keys[0], root.root_keys[0]], revoked_versions=[RELEASE])
    assert serving.poll_result([cand(pair)]) == "no_valid_manifest"
    assert serving.ignored_signatures_total["wrong_role"] == 1 and serving.rejected_total["below_threshold"] == 1
    assert_kept(serving, serving=True)


def test_no_trusted_signature_at_all_is_bad_signature(serving, root, kit, tmp_path):
    outsider = kit.make_keys(tmp_path / "outsider").private
    data, _ = root.manifest(6)
    assert serving.poll_result([cand((data, sign_blob(outsider, data)))]) == "no_valid_manifest"  # bare signature
    assert serving.rejected_total["bad_signature"] == 1
    assert_kept(serving, serving=True)


def test_bundle_for_other_bytes_is_refused(halted, root):
    _, sig = root.manifest(6)
    other, _ = root.manifest(7)
    assert halted.poll_result([cand((other, sig))]) == "no_valid_manifest"
    assert halted.rejected_total["bundle_mismatch"] == 1
    assert_kept(halted, serving=False)


def test_bundle_over_the_size_cap_is_refused(halted, root):
    data, _ = root.manifest(6)
    a = root.manifest_keys[0]
    one = (key_id(a.public_key()), sign_blob(a, data))
    huge = dump_bundle(data, [one] * 20).replace(b'"signatures": [', b'"signatures": [' + b" " * MAX_SIGNATURE_BYTES, 1)
    assert halted.poll_result([cand((data, huge))]) == "no_valid_manifest"
    assert halted.rejected_total["signature_oversize"] == 1
    assert_kept(halted, serving=False)


def test_malformed_bundles_are_refused(halted, root):
    data, sig = root.manifest(6)
    obj = json.loads(sig)
    cases = [
        {**obj, "extra": 1},
        {**obj, "signatures": [{"keyid": "zz", "sig": "AAAA"}]},
        {**obj, "signatures": [{"keyid": obj["signatures"][0]["keyid"], "sig": "not base64!"}]},
        {**obj, "signatures": "nope"},
    ]
    for bad in cases:
        assert halted.poll_result([cand((data, json.dumps(bad).encode()))]) == "no_valid_manifest"
    dup = sig.replace(b'"sha256"', b'"sha256": "x", "sha256"', 1)
    assert halted.poll_result([cand((data, dup))]) == "no_valid_manifest"
    assert halted.rejected_total["malformed_signature"] == len(cases) + 1
    assert_kept(halted, serving=False)


def test_lift_needs_the_lift_threshold(halted, root):
    assert halted.poll_result([cand(root.manifest(6, by=[0, 1]))]) == "no_valid_manifest"
    assert halted.rejected_total["below_lift_threshold"] == 1
    assert_kept(halted, serving=False)
    assert halted.poll_result([cand(root.manifest(7, by=[0, 1, 2]))]) == "accepted"
    assert halted.state.serving


def test_a_halt_or_a_refresh_needs_only_the_halt_threshold(halted, root):
    # Still halting (a refresh of the halt): two signatures are enough, it lifts nothing.
    assert halted.poll_result([cand(root.manifest(6, by=[1, 2], revoked_versions=[RELEASE, "1.3.0"]))]) == "accepted"
    assert not halted.state.serving and halted.manifest_version == 6


def test_lift_before_not_before_is_held_then_takes_effect(kit, tmp_path):
    root = kit.make_root(tmp_path / "root", timelock=600)
    clock = [kit.now()]
    ks = engine(kit, root, tmp_path, clock=lambda: clock[0])
    ks.poll_result([cand(root.manifest(5, revoked_versions=[RELEASE]))], started=clock[0])
    assert not ks.state.serving
    lift = root.manifest(6, by=[0, 1, 2], issued=clock[0] - dt.timedelta(seconds=1), not_before_in=600)
    assert ks.poll_result([cand(lift)], started=clock[0]) == "no_valid_manifest"
    assert ks.rejected_total["lift_timelocked"] == 1
    assert_kept(ks, serving=False)
    pending = ks.snapshot()["pending_lift"]
    assert pending["version"] == 6 and 590 <= pending["seconds_left"] <= 600 and len(pending["signed_by"]) == 3
    assert 590 <= ks.lift_timelock_remaining() <= 600
    clock[0] += dt.timedelta(seconds=300)
    assert ks.poll_result([cand(lift)], started=clock[0]) == "no_valid_manifest"
    assert not ks.state.serving and ks.snapshot()["pending_lift"]["seconds_left"] <= 300
    clock[0] += dt.timedelta(seconds=301)
    assert ks.poll_result([cand(lift)], started=clock[0]) == "accepted"
    assert ks.state.serving and ks.pending_lift is None and ks.manifest_version == 6


def test_a_retracted_lift_is_no_longer_pending(kit, tmp_path):
    root = kit.make_root(tmp_path / "root", timelock=600)
    ks = engine(kit, root, tmp_path)
    ks.poll_result([cand(root.manifest(5, revoked_versions=[RELEASE]))])
    ks.poll_result([cand(root.manifest(6, by=[0, 1, 2], not_before_in=600))])
    assert ks.pending_lift is not None
    # The key holders answer the stolen lift with a newer halt: it is taken at once, the lift is gone.
    assert ks.poll_result([cand(root.manifest(7, by=[0, 1], issued=kit.now(), revoked_versions=[RELEASE]))]) \
        == "accepted"
    assert ks.pending_lift is None and not ks.state.serving and ks.manifest_version == 7


def test_lift_without_timelock_or_too_short(kit, tmp_path):
    root = kit.make_root(tmp_path / "root", timelock=600)
    ks = engine(kit, root, tmp_path)
    ks.poll_result([cand(root.manifest(5, revoked_versions=[RELEASE]))])
    assert ks.poll_result([cand(root.manifest(6, by=[0, 1, 2]))]) == "no_valid_manifest"
    assert ks.rejected_total["lift_without_timelock"] == 1
    assert ks.poll_result([cand(root.manifest(7, by=[0, 1, 2], not_before_in=60))]) == "no_valid_manifest"
    assert ks.rejected_total["lift_timelock_too_short"] == 1
    assert_kept(ks, serving=False)


def test_issued_in_the_future_is_refused(serving, root, kit):
    pair = root.manifest(6, issued=kit.now() + dt.timedelta(hours=1), revoked_versions=[RELEASE])
    assert serving.poll_result([cand(pair)]) == "no_valid_manifest"
    assert serving.rejected_total["issued_in_future"] == 1
    assert_kept(serving, serving=True)


def test_threshold_halt_survives_a_restart(halted, kit, root, tmp_path):
    st = kit.make_state()
    ks2 = engine(kit, root, tmp_path, state=st)
    assert not st.serving and "is revoked" in st.halt_reasons["kill_switch"] and ks2.manifest_version == 5
    assert len(ks2.signed_by) == 2


# --- the root chain ----------------------------------------------------------------------------


def test_rotation_changes_keys_and_thresholds(serving, root):
    data, sig = root.next_root(drop_manifest=(2,), add_manifest=1)
    assert serving.offer_root("r", data, sig)
    assert serving.trust.version == 2 and serving.root_rotations_total == 1
    new_key = root.manifest_keys[2]  # the added one
    assert serving.poll_result([cand(root.manifest(6, signers=[root.manifest_keys[0], new_key]))]) == "accepted"


def test_rotated_out_key_no_longer_counts(serving, root):
    removed = root.manifest_keys[2]
    data, sig = root.next_root(drop_manifest=(2,))
    assert serving.offer_root("r", data, sig)
    pair = root.manifest(6, signers=[root.manifest_keys[0], removed], revoked_versions=[RELEASE])
    assert serving.poll_result([cand(pair)]) == "no_valid_manifest"
    assert serving.ignored_signatures_total["rotated_out_key"] == 1
    assert serving.rejected_total["below_threshold"] == 1
    assert_kept(serving, serving=True)


@pytest.mark.parametrize("case,label", [
    ("rollback", "root_rollback"),
    ("same_version", "root_rollback"),
    ("gap", "root_gap"),
    ("old_keys_below_threshold", "root_below_threshold"),
    ("expired", "root_expired"),
    ("issued_before", "root_rollback"),
    ("other_scope", "root_wrong_scope"),
])
def test_bad_roots_are_refused_and_the_trust_is_kept(halted, root, kit, case, label):
    before = halted.state.halt_reasons["kill_switch"]
    if case == "rollback":
        first = (root.data, root.sig)
        assert halted.offer_root("r", *root.next_root())
        data, sig = first  # the pinned v1 again, after v2 is trusted
    elif case == "same_version":
        data, sig = root.next_root(version=1)
    elif case == "gap":
        data, sig = root.next_root(version=3)
    elif case == "old_keys_below_threshold":
        data, sig = root.next_root(signed_by_old=1, signed_by_new=1)
    elif case == "expired":
        data, sig = root.next_root(issued=kit.now() - dt.timedelta(seconds=30), expires_in=10)
    elif case == "issued_before":
        data, sig = root.next_root(issued=kit.now() - dt.timedelta(days=2))
    else:
        data, sig = root.next_root(scope="other-fleet")
    version = halted.trust.version
    assert not halted.offer_root("r", data, sig)
    assert halted.rejected_total[label] == 1
    assert halted.trust.version == version
    assert halted.state.halt_reasons["kill_switch"] == before


def test_new_root_must_also_carry_its_own_threshold(serving, root, kit):
    # Old root keys sign, but the new root names root keys of which none signed.
    from swqos_killswitch.root import build_root, parse_root

    old = parse_root(root.data)
    others = [kit.make_keys(root.directory / f"r{i}").private for i in range(2)]
    data = build_root(version=2, scope=old.scope, issued_at=kit.now(), expires=kit.now() + dt.timedelta(days=1),
                      root_keys=[k.public_key() for k in others], root_threshold=2,
                      manifest_keys=[k.public_key() for k in root.manifest_keys], halt_threshold=2, lift_threshold=3,
                      lift_timelock_seconds=0)
    assert not serving.offer_root("r", data, kit.bundle(data, root.root_keys))
    assert serving.rejected_total["root_below_threshold"] == 1
    assert serving.offer_root("r", data, kit.bundle(data, [*root.root_keys, *others]))
    assert serving.trust.version == 2


def test_root_freeze_expiry_halts_by_default_and_keeps_a_halt(kit, tmp_path):
    root = kit.make_root(tmp_path / "root", expires_in=3600)
    clock = [kit.now()]
    ks = engine(kit, root, tmp_path, clock=lambda: clock[0])
    ks.poll_result([cand(root.manifest(1, ttl=86400))], started=clock[0])
    assert ks.state.serving
    clock[0] += dt.timedelta(hours=2)  # nobody can get a newer root to us: a freeze
    assert ks.poll_result([cand(root.manifest(2, ttl=86400, issued=clock[0] - dt.timedelta(seconds=5)))],
                          started=clock[0]) == "no_valid_manifest"
    assert ks.rejected_total["root_expired"] == 1
    assert not ks.state.serving and "trust root v1 expired" in ks.state.halt_reasons["kill_switch"]


def test_root_expiry_with_serve_policy_still_keeps_a_halt(kit, tmp_path):
    root = kit.make_root(tmp_path / "root", expires_in=3600)
    clock = [kit.now()]
    ks = engine(kit, root, tmp_path, clock=lambda: clock[0], on_stale="serve")
    ks.poll_result([cand(root.manifest(1, ttl=86400, revoked_versions=[RELEASE]))], started=clock[0])
    clock[0] += dt.timedelta(hours=2)
    lift = root.manifest(2, by=[0, 1, 2], ttl=86400, issued=clock[0] - dt.timedelta(seconds=5))
    assert ks.poll_result([cand(lift)], started=clock[0]) == "no_valid_manifest"
    assert ks.rejected_total["root_expired"] == 1
    assert not ks.state.serving and "is revoked" in ks.state.halt_reasons["kill_switch"]


def test_rotated_chain_survives_a_restart_and_tampering_is_caught(serving, kit, root, tmp_path):
    data, sig = root.next_root(drop_manifest=(2,))
    assert serving.offer_root("r", data, sig)
    assert serving.poll_result([cand(root.manifest(6))]) == "accepted"
    ks2 = engine(kit, root, tmp_path)
    assert ks2.trust.version == 2 and ks2.manifest_version == 6 and ks2.state.serving
    # A chain file edited on disk is untrusted input: it is refused and the pinned root applies.
    chain = serving.root_store.path
    rec = json.loads(chain.read_text())
    rec["roots"][0]["signature"] = rec["roots"][0]["signature"][::-1]
    chain.write_text(json.dumps(rec))
    ks3 = engine(kit, root, tmp_path)
    assert ks3.trust.version == 1 and ks3.rejected_total["damaged_state"] >= 1


def test_dropping_a_measurement_before_the_enclave_is_known_is_a_lift(kit, root, tmp_path):
    from swqos_core.state import ServiceState

    st = ServiceState(release_version=RELEASE)  # no enclave identity yet
    ks = engine(kit, root, tmp_path, state=st)
    revoked = "cd" * 48
    assert ks.poll_result([cand(root.manifest(1, revoked_measurements=[revoked]))]) == "accepted"
    assert ks.poll_result([cand(root.manifest(2, by=[0, 1]))]) == "no_valid_manifest"
    assert ks.rejected_total["below_lift_threshold"] == 1 and ks.manifest_version == 1
    assert ks.poll_result([cand(root.manifest(3, by=[0, 1, 2]))]) == "accepted"


def test_restart_after_rotation_rechecks_the_persisted_halt_under_the_current_root(kit, root, tmp_path):
    """A persisted halt signed by keys the root has since removed no longer verifies (those keys may
    be the stolen ones), but a halt stays a halt, even with on_stale = "serve"; only a valid lift ends it."""
    ks = engine(kit, root, tmp_path, on_stale="serve")
    ks.poll_result([cand(root.manifest(5, by=[1, 2], revoked_versions=[RELEASE]))])
    assert not ks.state.serving
    assert ks.offer_root("r", *root.next_root(drop_manifest=(2,), add_manifest=1))
    st = kit.make_state()
    ks2 = engine(kit, root, tmp_path, state=st, on_stale="serve")
    assert ks2.trust.version == 2 and ks2.manifest_version is None
    assert ks2.rejected_total["below_threshold"] == 1 and ks2.ignored_signatures_total["rotated_out_key"] == 1
    assert not st.serving and "no longer verifiable" in st.halt_reasons["kill_switch"]
    # A stolen halt quorum cannot turn that into a lift...
    assert ks2.poll_result([cand(root.manifest(6, by=[0, 1]))]) == "no_valid_manifest"
    assert ks2.rejected_total["below_lift_threshold"] == 1 and not st.serving
    # ...a re-signed halt is taken, and the lift threshold lifts.
    assert ks2.poll_result([cand(root.manifest(7, by=[0, 2], revoked_versions=[RELEASE]))]) == "accepted"
    assert not st.serving and ks2.manifest_version == 7
    assert ks2.poll_result([cand(root.manifest(8, by=[0, 1, 2]))]) == "accepted"
    assert st.serving


def test_a_held_lift_is_defeated_by_rotating_its_signers_out(kit, tmp_path):
    """The timelock's purpose: a stolen lift quorum is seen while held, and a root rotation that
    removes the stolen keys makes the held lift worthless before its not_before."""
    root = kit.make_root(tmp_path / "root", n_manifest=4, halt=2, lift=3, timelock=600)
    clock = [kit.now()]
    ks = engine(kit, root, tmp_path, clock=lambda: clock[0])
    ks.poll_result([cand(root.manifest(5, revoked_versions=[RELEASE]))], started=clock[0])
    stolen = root.manifest(6, by=[1, 2, 3], issued=clock[0] - dt.timedelta(seconds=1), not_before_in=600)
    ks.poll_result([cand(stolen)], started=clock[0])
    assert ks.pending_lift is not None and not ks.state.serving
    assert ks.offer_root("r", *root.next_root(drop_manifest=(2, 3), add_manifest=2))
    clock[0] += dt.timedelta(seconds=601)
    assert ks.poll_result([cand(stolen)], started=clock[0]) == "no_valid_manifest"
    assert ks.rejected_total["below_threshold"] == 1 and ks.ignored_signatures_total["rotated_out_key"] == 2
    assert not ks.state.serving and ks.pending_lift is None and ks.manifest_version == 5
