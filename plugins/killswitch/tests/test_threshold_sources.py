"""Threshold trust through the real sources: a local HTTPS server (pinned self-signed CA) or files."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from swqos_core.errors import ConfigError
from swqos_killswitch.metrics import KillSwitchMetrics
from swqos_killswitch.signing import MAX_SIGNATURE_BYTES
from swqos_killswitch.sources import FileSource, FileSourceSettings, HttpsSource, HttpsSourceSettings
from swqos_killswitch.status import KillSwitchStatus

RELEASE = "1.3.1"
PATH = "/revocation.json"
#: Hang guard only: a test that needs this long has failed, whatever the assertion says.
GUARD = 20.0


def settings(kit, rk, server, tmp_path, **over) -> HttpsSourceSettings:
    kw = dict(url=server.url(PATH), root=rk.path, root_sha256=rk.sha256, scope=kit.SCOPE,
              state_dir=tmp_path / "state", ca_bundle=server.cert, poll_interval=0.2,
              connect_timeout=2.0, total_timeout=2.0)
    kw.update(over)
    return HttpsSourceSettings(**kw)


async def until(state, predicate) -> None:
    changed = asyncio.Event()
    state.subscribe(changed.set)
    async with asyncio.timeout(GUARD):
        while not predicate():
            await changed.wait()
            changed.clear()


async def test_threshold_halt_within_one_poll_and_after_a_restart(kit, root, server, tmp_path):
    state = kit.make_state()
    server.publish(*root.manifest(1, revoked_versions=["0.9.0"]))
    src = HttpsSource(settings(kit, root, server, tmp_path), state)
    await src.start()
    try:
        await until(state, lambda: state.serving)
        server.publish(*root.manifest(2, by=[0], revoked_versions=[RELEASE]))  # one key: refused
        src.poll_now()
        async with asyncio.timeout(GUARD):
            while src.engine.rejected_total["below_threshold"] == 0:
                await asyncio.sleep(0.02)
        assert state.serving
        server.publish(*root.manifest(3, by=[1, 2], revoked_versions=[RELEASE]))
        await until(state, lambda: not state.serving)  # the background poller, not a direct call
        assert src.engine.manifest_version == 3
    finally:
        await src.close()
    server.routes.clear()  # the server is gone: only the persisted threshold halt remains
    state2 = kit.make_state()
    src2 = HttpsSource(settings(kit, root, server, tmp_path), state2)
    await src2.start()
    try:
        assert not state2.serving and "is revoked" in state2.halt_reasons["kill_switch"]
        assert src2.engine.manifest_version == 3 and len(src2.engine.signed_by) == 2
    finally:
        await src2.close()


async def test_rotation_is_fetched_next_to_the_manifest_and_persisted(kit, root, server, tmp_path):
    state = kit.make_state()
    src = HttpsSource(settings(kit, root, server, tmp_path), state)
    server.publish(*root.manifest(1))
    assert await src.poll_once() == "accepted" and src.engine.trust.version == 1
    removed = root.manifest_keys[2]
    data, sig = root.next_root(drop_manifest=(2,), add_manifest=1)
    server.routes["/2.root.json"] = kit.Route(data)
    server.routes["/2.root.json.sig"] = kit.Route(sig)
    server.publish(*root.manifest(2, signers=[root.manifest_keys[2], root.manifest_keys[0]]))  # the new key
    assert await src.poll_once() == "accepted"
    assert src.engine.trust.version == 2 and server.hits["/3.root.json"] == 1  # looked for v3, found none
    assert src.engine.fetch_failures_total == {}  # a missing next root is not a failure
    # The removed key no longer counts.
    server.publish(*root.manifest(3, signers=[removed, root.manifest_keys[0]], revoked_versions=[RELEASE]))
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.ignored_signatures_total["rotated_out_key"] == 1 and state.serving
    samples = {(n, labels): v for n, labels, v in KillSwitchMetrics([("https", src)]).collect()}
    assert samples[("swqos_kill_switch_root_version", ("https",))] == 2
    assert samples[("swqos_kill_switch_ignored_signatures", ("https", "rotated_out_key"))] == 1
    await src.close()
    server.routes.clear()
    src2 = HttpsSource(settings(kit, root, server, tmp_path), kit.make_state())
    await src2.start()
    try:
        assert src2.engine.trust.version == 2  # the chain was persisted and re-verified
    finally:
        await src2.close()


async def test_bad_root_on_the_mirror_keeps_the_trust(kit, root, server, tmp_path):
    state = kit.make_state()
    src = HttpsSource(settings(kit, root, server, tmp_path), state)
    server.publish(*root.manifest(1, revoked_versions=[RELEASE]))
    assert await src.poll_once() == "accepted" and not state.serving
    data, sig = root.next_root(signed_by_old=1, signed_by_new=1)  # below the old root's threshold
    server.routes["/2.root.json"] = kit.Route(data)
    server.routes["/2.root.json.sig"] = kit.Route(sig)
    assert await src.poll_once() == "unchanged"
    assert src.engine.rejected_total["root_below_threshold"] == 1
    assert src.engine.trust.version == 1 and not state.serving


async def test_bundle_over_the_size_cap_is_refused(kit, root, server, tmp_path):
    state = kit.make_state()
    src = HttpsSource(settings(kit, root, server, tmp_path), state)
    server.publish(*root.manifest(1, revoked_versions=[RELEASE]))
    assert await src.poll_once() == "accepted"
    data, sig = root.manifest(2, by=[0, 1, 2])
    server.publish(data, sig + b" " * MAX_SIGNATURE_BYTES)
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.rejected_total["oversize"] == 1
    assert not state.serving and src.engine.manifest_version == 1


async def test_poller_wakes_for_a_lift_timelock(kit, server, tmp_path):
    """With a 60 s poll interval the held lift still takes effect when its not_before passes."""
    root = kit.make_root(tmp_path / "root", timelock=1)
    state = kit.make_state()
    src = HttpsSource(settings(kit, root, server, tmp_path, poll_interval=60.0), state)
    server.publish(*root.manifest(1, revoked_versions=[RELEASE]))
    assert await src.poll_once() == "accepted"
    issued = kit.now() + dt.timedelta(seconds=1)
    server.publish(*root.manifest(2, by=[0, 1, 2], issued=issued, not_before_in=1))
    await src.start()
    try:
        async with asyncio.timeout(GUARD):
            while src.engine.rejected_total["lift_timelocked"] == 0:
                await asyncio.sleep(0.02)
        assert not state.serving
        status = KillSwitchStatus([("https", src)])()["https"]
        assert status["pending_lift"]["version"] == 2 and status["halted"]
        samples = {(n, labels): v for n, labels, v in KillSwitchMetrics([("https", src)]).collect()}
        assert samples[("swqos_kill_switch_lift_pending", ("https",))] == 1
        assert 0 <= samples[("swqos_kill_switch_lift_timelock_seconds", ("https",))] <= 2
        await until(state, lambda: state.serving)
        assert src.engine.manifest_version == 2 and src.engine.pending_lift is None
    finally:
        await src.close()


async def test_file_source_with_a_root_and_a_rotation(kit, root, tmp_path):
    state = kit.make_state()
    d = tmp_path / "drop"
    d.mkdir()
    s = FileSourceSettings(path=d / "revocation.json", root=root.path, root_sha256=root.sha256, scope=kit.SCOPE,
                           state_dir=tmp_path / "fs-state")
    src = FileSource(s, state)

    def publish(pair):
        (d / "revocation.json").write_bytes(pair[0])
        (d / "revocation.json.sig").write_bytes(pair[1])

    publish(root.manifest(1, by=[0, 2]))
    assert await src.poll_once() == "accepted" and state.serving
    data, sig = root.next_root(halt_threshold=3, lift_threshold=3)
    (d / "2.root.json").write_bytes(data)
    (d / "2.root.json.sig").write_bytes(sig)
    publish(root.manifest(2, by=[0, 1], revoked_versions=[RELEASE]))  # 2 of 3: enough under v1, not v2
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.trust.version == 2 and src.engine.rejected_total["below_threshold"] == 1 and state.serving


def test_settings_choose_one_trust(kit, keys, root, server, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        settings(kit, root, server, tmp_path, public_key=keys.pub_path, key_id=keys.key_id)
    with pytest.raises(ValueError, match="root_sha256 must be 64 hex"):
        settings(kit, root, server, tmp_path, root_sha256="abc")
    with pytest.raises(ValueError, match="public_key is required"):
        settings(kit, root, server, tmp_path, root=None, root_sha256=None)
    with pytest.raises(ValueError, match="root_url without root"):
        HttpsSourceSettings(url=server.url(PATH), public_key=keys.pub_path, key_id=keys.key_id, scope=kit.SCOPE,
                            state_dir=tmp_path, root_url=server.url("/roots/"))


def test_installed_root_is_checked_at_startup(kit, root, server, tmp_path):
    with pytest.raises(ConfigError, match="root_pin_mismatch"):
        HttpsSource(settings(kit, root, server, tmp_path, root_sha256="0" * 64), kit.make_state())
    other = kit.make_root(tmp_path / "other", scope="other-fleet")
    with pytest.raises(ConfigError, match="scope"):
        HttpsSource(settings(kit, other, server, tmp_path, root_sha256=other.sha256), kit.make_state())
    (root.directory / "root.json.sig").write_bytes(kit.bundle(root.data, root.root_keys[:1]))
    with pytest.raises(ConfigError, match="root_below_threshold"):
        HttpsSource(settings(kit, root, server, tmp_path), kit.make_state())


async def test_single_key_manifest_still_works_without_a_root(kit, keys, server, tmp_path):
    """Compatibility: the pinned key alone, threshold 1, bare cosign signatures or a one-entry bundle."""
    state = kit.make_state()
    src = HttpsSource(HttpsSourceSettings(url=server.url(PATH), public_key=keys.pub_path, key_id=keys.key_id,
                                          scope=kit.SCOPE, state_dir=tmp_path / "s", ca_bundle=server.cert),
                      state)
    server.publish(*keys.manifest(1, revoked_versions=[RELEASE]))
    assert await src.poll_once() == "accepted" and not state.serving
    data, _ = keys.manifest(2)
    server.publish(data, kit.bundle(data, [keys.private]))
    assert await src.poll_once() == "accepted" and state.serving  # threshold 1 lifts, no timelock
    assert src.snapshot()["trust"]["mode"] == "single_key"
