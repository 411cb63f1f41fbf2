"""The kill switch's decisions, driven directly (no transport): ServiceState is the observable."""

from __future__ import annotations

import base64
import datetime as dt
import json

from swqos_core.state import EnclaveIdentity
from swqos_killswitch.engine import Candidate, KillSwitch
from swqos_killswitch.signing import PinnedKey, sign_blob
from swqos_killswitch.store import ManifestStore

RELEASE = "1.3.1"
MEASUREMENT = "ab" * 48
SCOPE = "test-fleet"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def engine(keys, state, tmp_path, *, clock=None, on_stale="halt", name="t") -> KillSwitch:
    kw = {"clock": clock} if clock else {}
    ks = KillSwitch(state=state, pinned=PinnedKey.from_file(keys.pub_path, keys.key_id), scope=SCOPE,
                    store=ManifestStore(tmp_path / "state", name), on_stale=on_stale, **kw)
    ks.restore()
    return ks


def cand(pair, origin="test") -> Candidate:
    return Candidate(origin, *pair)


def test_no_manifest_yet_halts_by_default(keys, state, tmp_path):
    ks = engine(keys, state, tmp_path)
    assert not state.serving
    assert "no valid revocation manifest" in state.halt_reasons["kill_switch"]
    assert ks.manifest_version is None


def test_on_stale_serve_keeps_serving_without_manifest(keys, state, tmp_path):
    ks = engine(keys, state, tmp_path, on_stale="serve")
    assert state.serving
    assert ks.snapshot()["stale"] is True


def test_manifest_not_naming_us_serves(keys, state, tmp_path):
    ks = engine(keys, state, tmp_path)
    assert ks.poll_result([cand(keys.manifest(1, revoked_versions=["0.9.0"]))]) == "accepted"
    assert state.serving and ks.manifest_version == 1 and ks.accepted_total == 1
    assert 0 <= ks.manifest_age_seconds() < 3600


def test_halt_for_our_version_then_newer_lifts(keys, state, tmp_path):
    ks = engine(keys, state, tmp_path)
    ks.poll_result([cand(keys.manifest(1, revoked_versions=[RELEASE], reason="CVE-X"))])
    assert not state.serving
    assert f"release {RELEASE} is revoked" in state.halt_reasons["kill_switch"]
    assert "CVE-X" in ks.halt_reason
    ks.poll_result([cand(keys.manifest(2, revoked_versions=["1.3.0"]))])
    assert state.serving and ks.halt_reason is None


def test_halt_for_measurement_and_min_version(keys, tmp_path, kit):
    st = kit.make_state()
    ks = engine(keys, st, tmp_path)
    ks.poll_result([cand(keys.manifest(1, revoked_measurements=[MEASUREMENT]))])
    assert "measurement" in st.halt_reasons["kill_switch"]
    st2 = kit.make_state(release="1.2.0")
    ks2 = engine(keys, st2, tmp_path, name="t2")
    ks2.poll_result([cand(keys.manifest(1, min_version="1.3.0"))])
    assert "below the minimum" in st2.halt_reasons["kill_switch"]


def test_enclave_identity_arriving_later_is_checked(keys, tmp_path):
    from swqos_core.state import ServiceState

    st = ServiceState(release_version=RELEASE)
    ks = engine(keys, st, tmp_path)
    ks.poll_result([cand(keys.manifest(1, revoked_measurements=[MEASUREMENT]))])
    assert "kill_switch" not in st.halt_reasons
    st.set_enclave(True, EnclaveIdentity(b"\x01" * 32, MEASUREMENT, 0))
    assert "measurement" in st.halt_reasons["kill_switch"]
    st.set_enclave(True, EnclaveIdentity(b"\x01" * 32, "cd" * 48, 0))
    assert "kill_switch" not in st.halt_reasons


def test_invalid_inputs_never_lift_nor_replace(keys, other_keys, state, tmp_path):
    ks = engine(keys, state, tmp_path)
    ks.poll_result([cand(keys.manifest(5, revoked_versions=[RELEASE]))])
    halted_reason = state.halt_reasons["kill_switch"]
    good_data, good_sig = keys.manifest(6)
    bad = {
        "bad_signature": (good_data, sign_blob(other_keys.private, good_data)),
        "bad_signature#2": (good_data.replace(b'"version": 6', b'"version": 7'), good_sig),
        "rollback": keys.manifest(4),
        "expired": keys.manifest(9, issued=now() - dt.timedelta(hours=2), ttl=60),
        "wrong_scope": keys.manifest(10, scope="other-fleet"),
        "wrong_key_id": (lambda d: (d, sign_blob(keys.private, d)))(
            json.dumps({**json.loads(good_data), "key_id": other_keys.key_id}).encode()),
        "wrong_type": (lambda d: (d, sign_blob(keys.private, d)))(
            json.dumps({**json.loads(good_data), "_type": "swqos/release-manifest/v1"}).encode()),
        "malformed": (b"<html>hi</html>", sign_blob(keys.private, b"<html>hi</html>")),
        "version_reuse": keys.manifest(5, revoked_versions=["0.0.1"]),
    }
    for label, pair in bad.items():
        outcome = ks.poll_result([cand(pair, label)])
        assert outcome == "no_valid_manifest", label
        assert ks.manifest_version == 5, label
        assert state.halt_reasons["kill_switch"] == halted_reason, label
        assert ks.rejected_total[label.split("#")[0]] >= 1, label
    assert sum(ks.rejected_total.values()) == len(bad)
    assert ks.consecutive_failures == len(bad)


def test_equal_version_same_bytes_is_unchanged(keys, state, tmp_path):
    ks = engine(keys, state, tmp_path)
    pair = keys.manifest(3)
    ks.poll_result([cand(pair)])
    assert ks.poll_result([cand(pair)]) == "unchanged"
    assert ks.accepted_total == 1 and ks.unchanged_total == 1 and not ks.rejected_total


def test_newer_version_issued_earlier_is_a_rollback(keys, state, tmp_path):
    ks = engine(keys, state, tmp_path)
    ks.poll_result([cand(keys.manifest(3))])
    assert ks.poll_result([cand(keys.manifest(4, issued=now() - dt.timedelta(minutes=30)))]) == "no_valid_manifest"
    assert ks.rejected_total["rollback"] == 1 and ks.manifest_version == 3


def test_highest_valid_mirror_wins_and_lagging_mirror_is_not_an_alarm(keys, state, tmp_path):
    ks = engine(keys, state, tmp_path)
    ks.poll_result([cand(keys.manifest(2), "mirror"), cand(keys.manifest(3, revoked_versions=[RELEASE]), "primary")])
    assert ks.manifest_version == 3 and not state.serving and not ks.rejected_total


def test_fetch_failures_keep_last_good_until_expiry_then_halt(keys, state, tmp_path):
    clock = [now()]
    ks = engine(keys, state, tmp_path, clock=lambda: clock[0])
    ks.poll_result([cand(keys.manifest(1, ttl=600))], started=clock[0])
    assert state.serving
    clock[0] += dt.timedelta(seconds=300)
    ks.poll_result([], [("https://x", "timeout", "slow")], started=clock[0])
    assert state.serving and ks.fetch_failures_total["timeout"] == 1
    clock[0] += dt.timedelta(seconds=600)
    ks.poll_result([], [("https://x", "connect", "refused")], started=clock[0])
    assert not state.serving
    assert "expired" in state.halt_reasons["kill_switch"]


def test_expiry_with_serve_policy(keys, state, tmp_path):
    clock = [now()]
    ks = engine(keys, state, tmp_path, clock=lambda: clock[0], on_stale="serve")
    ks.poll_result([cand(keys.manifest(1, ttl=600))], started=clock[0])
    clock[0] += dt.timedelta(seconds=900)
    ks.poll_result([], [("https://x", "timeout", "slow")], started=clock[0])
    assert state.serving and ks.snapshot()["stale"] is True


def test_halt_is_honoured_after_its_manifest_expires(keys, state, tmp_path):
    clock = [now()]
    ks = engine(keys, state, tmp_path, clock=lambda: clock[0], on_stale="serve")
    ks.poll_result([cand(keys.manifest(1, ttl=600, revoked_versions=[RELEASE]))], started=clock[0])
    clock[0] += dt.timedelta(days=1)
    ks.evaluate()
    assert "is revoked" in state.halt_reasons["kill_switch"]


def test_restart_while_halted_is_still_halted(keys, tmp_path, kit):
    st = kit.make_state()
    ks = engine(keys, st, tmp_path)
    ks.poll_result([cand(keys.manifest(7, revoked_versions=[RELEASE]))])
    st2 = kit.make_state()
    ks2 = engine(keys, st2, tmp_path)
    assert ks2.manifest_version == 7
    assert "is revoked" in st2.halt_reasons["kill_switch"]
    # ...and the persisted version floor survives too: a replay of v6 is refused after restart.
    assert ks2.poll_result([cand(keys.manifest(6))]) == "no_valid_manifest"
    assert ks2.rejected_total["rollback"] == 1 and not st2.serving


def test_tampered_state_file_fails_closed(keys, tmp_path, kit):
    st = kit.make_state()
    ks = engine(keys, st, tmp_path)
    ks.poll_result([cand(keys.manifest(7, revoked_versions=[RELEASE]))])
    path = ks.store.path
    assert json.loads(path.read_text())["version"] == 7
    rec = json.loads(path.read_text())
    # An attacker on the host rewrites the stored manifest to one that does not name us.
    rec["manifest"] = base64.b64encode(base64.b64decode(rec["manifest"]).replace(RELEASE.encode(), b"0.0.0")).decode()
    path.write_text(json.dumps(rec))
    st2 = kit.make_state()
    ks2 = engine(keys, st2, tmp_path)
    assert ks2.manifest_version is None and not st2.serving
    assert ks2.rejected_total["bad_signature"] == 1
    path.write_text("{not json")
    st3 = kit.make_state()
    ks3 = engine(keys, st3, tmp_path)
    assert not st3.serving and "unusable" in st3.halt_reasons["kill_switch"]
    assert ks3.rejected_total["damaged_state"] == 1
    # A valid manifest fetched afterwards restores normal operation (and a new floor).
    ks3.poll_result([cand(keys.manifest(8))])
    assert st3.serving and ks3.manifest_version == 8


def test_persist_failure_still_applies_halt(keys, state, tmp_path):
    ks = engine(keys, state, tmp_path)
    (tmp_path / "state").mkdir(exist_ok=True)
    ks.store.state_dir = tmp_path / "state" / "file-not-dir"
    ks.store.state_dir.write_text("x")
    ks.store.path = ks.store.state_dir / "revocation-t.json"
    ks.poll_result([cand(keys.manifest(1, revoked_versions=[RELEASE]))])
    assert ks.persist_failures_total == 1 and not state.serving


def test_state_file_is_private_and_atomic(keys, state, tmp_path):
    ks = engine(keys, state, tmp_path)
    ks.poll_result([cand(keys.manifest(1))])
    assert (tmp_path / "state").stat().st_mode & 0o077 == 0
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["revocation-t.json"]  # no temp file left
