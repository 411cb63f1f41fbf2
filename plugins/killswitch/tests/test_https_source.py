"""The issue's "Bad input" list, each against a real local HTTPS server (self-signed, pinned CA)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from swqos_core import fetch
from swqos_core.errors import ConfigError
from swqos_core.fetch import FetchError, check_url
from swqos_killswitch.signing import sign_blob
from swqos_killswitch.sources import HttpsSource, HttpsSourceSettings

RELEASE = "1.3.1"
PATH = "/revocation.json"
#: Hang guard only: a test that needs this long has failed, whatever the assertion says.
GUARD = 20.0


def settings(kit, keys, server, tmp_path, **over) -> HttpsSourceSettings:
    kw = dict(
        url=server.url(PATH), public_key=keys.pub_path, key_id=keys.key_id, scope=kit.SCOPE,
        state_dir=tmp_path / "state", ca_bundle=server.cert, poll_interval=0.2,
        connect_timeout=2.0, total_timeout=2.0,
    )
    kw.update(over)
    return HttpsSourceSettings(**kw)


async def until(state, predicate) -> None:
    """Wait for a ServiceState change that makes ``predicate`` true (bounded by GUARD)."""
    changed = asyncio.Event()
    state.subscribe(changed.set)
    async with asyncio.timeout(GUARD):
        while not predicate():
            await changed.wait()
            changed.clear()


@pytest.fixture
async def halted(kit, keys, server, tmp_path):
    """A source that accepted v5 revoking this release: the state is halted."""
    state = kit.make_state()
    src = HttpsSource(settings(kit, keys, server, tmp_path), state)
    server.publish(*keys.manifest(5, revoked_versions=[RELEASE], reason="drill"))
    assert await src.poll_once() == "accepted"
    assert not state.serving
    yield src, state
    await src.close()


async def test_valid_halt_for_this_version_within_one_interval(kit, keys, server, tmp_path):
    state = kit.make_state()
    server.publish(*keys.manifest(1, revoked_versions=["0.9.0"]))
    src = HttpsSource(settings(kit, keys, server, tmp_path), state)
    await src.start()
    try:
        await until(state, lambda: state.serving)
        server.publish(*keys.manifest(2, revoked_versions=[RELEASE]))
        await until(state, lambda: not state.serving)  # the background poller, not a direct call
        assert f"release {RELEASE} is revoked" in state.halt_reasons["kill_switch"]
        assert src.engine.manifest_version == 2
    finally:
        await src.close()


async def test_valid_manifest_not_naming_this_version_keeps_serving(kit, keys, server, tmp_path):
    state = kit.make_state()
    src = HttpsSource(settings(kit, keys, server, tmp_path), state)
    server.publish(*keys.manifest(1, revoked_versions=["1.3.0", "1.2.9"], revoked_measurements=["cd" * 48]))
    assert await src.poll_once() == "accepted"
    assert state.serving and src.engine.accepted_total == 1


def _bad_inputs(keys, other_keys):
    data, sig = keys.manifest(6)
    return {
        "signature by another key": ((data, sign_blob(other_keys.private, data)), "bad_signature"),
        "signature over different bytes": ((data.replace(b'"version": 6', b'"version": 60'), sig), "bad_signature"),
        "replay of an older version": (keys.manifest(4), "rollback"),
        "expired manifest": (keys.manifest(7, issued=dt.datetime.now(dt.UTC) - dt.timedelta(days=2), ttl=3600),
                             "expired"),
        "HTML instead of JSON": ((b"<!doctype html><html><body>Welcome to nginx!</body></html>",
                                  b"<!doctype html><html><body>Welcome to nginx!</body></html>"),
                                 "malformed_signature"),
    }


@pytest.mark.parametrize("case", ["signature by another key", "signature over different bytes",
                                  "replay of an older version", "expired manifest", "HTML instead of JSON"])
async def test_bad_input_never_lifts_nor_replaces(case, halted, keys, other_keys, server):
    src, state = halted
    (pair, label) = _bad_inputs(keys, other_keys)[case]
    before = state.halt_reasons["kill_switch"]
    server.publish(*pair)
    assert await src.poll_once() == "no_valid_manifest"
    assert state.halt_reasons["kill_switch"] == before and not state.serving
    assert src.engine.manifest_version == 5
    assert src.engine.rejected_total[label] == 1
    assert src.engine.store.load().version == 5  # the persisted last good is untouched


async def test_larger_than_cap(halted, keys, server):
    src, state = halted
    data, _ = keys.manifest(6)
    server.publish(data + b" " * (64 * 1024), sign_blob(keys.private, data + b" " * (64 * 1024)))
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.rejected_total["oversize"] == 1
    assert not state.serving and src.engine.manifest_version == 5


async def test_larger_than_cap_without_content_length(kit, halted, keys, server):
    src, state = halted
    big = b"{" + b" " * (70 * 1024) + b"}"
    server.publish(big, sign_blob(keys.private, big))
    server.routes[PATH] = kit.Route(big, no_length=True)
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.rejected_total["oversize"] == 1 and not state.serving


async def test_slow_server_times_out_without_hanging(kit, keys, server, tmp_path):
    state = kit.make_state()
    src = HttpsSource(settings(kit, keys, server, tmp_path, total_timeout=0.5), state)
    data, sig = keys.manifest(1)
    server.publish(data, sig)
    server.routes[PATH] = kit.Route(data, trickle=0.05)  # ~20 bytes/s: every read makes progress
    async with asyncio.timeout(GUARD):
        assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.fetch_failures_total["timeout"] == 1
    assert not state.serving  # nothing valid ever accepted, default policy: halt


async def test_restart_while_halted_is_still_halted(kit, halted, keys, server, tmp_path):
    src, _ = halted
    await src.close()
    server.routes.clear()  # the manifest server is gone too: the persisted halt alone must hold
    state = kit.make_state()
    src2 = HttpsSource(settings(kit, keys, server, tmp_path), state)
    await src2.start()
    try:
        assert not state.serving  # in force when start() returns, before any poll
        assert "is revoked" in state.halt_reasons["kill_switch"]
        assert await src2.poll_once() == "no_valid_manifest"
        assert not state.serving
    finally:
        await src2.close()


async def test_newer_manifest_lifts_the_halt(halted, keys, server):
    src, state = halted
    server.publish(*keys.manifest(6, revoked_versions=["1.3.0"]))
    assert await src.poll_once() == "accepted"
    assert state.serving and "kill_switch" not in state.halt_reasons
    assert src.engine.store.load().version == 6


async def test_http_error_status_is_a_fetch_failure(kit, halted, server):
    src, state = halted
    server.routes[PATH] = kit.Route(b"<html>503</html>", status=503, content_type="text/html")
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.fetch_failures_total["http_status"] == 1 and not state.serving


async def test_second_mirror_is_used_when_the_first_fails(kit, keys, server, tmp_path):
    state = kit.make_state()
    src = HttpsSource(settings(kit, keys, server, tmp_path, url=server.url("/down.json"),
                               mirror_url=server.url("/mirror/revocation.json")), state)
    server.publish(*keys.manifest(3), path="/mirror/revocation.json")
    assert await src.poll_once() == "accepted"
    assert state.serving and src.engine.fetch_failures_total["http_status"] == 1


async def test_untrusted_server_certificate(kit, keys, server, tmp_path):
    state = kit.make_state()
    src = HttpsSource(settings(kit, keys, server, tmp_path, ca_bundle=None), state)  # system roots only
    server.publish(*keys.manifest(1))
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.fetch_failures_total["tls"] == 1


async def test_fetch_cap_and_errors_directly(kit, server):
    assert check_url("http://example.com/x") is not None
    assert check_url("https://user:pw@example.com/x") is not None
    assert check_url("https://example.com/x") is None
    with pytest.raises(FetchError) as exc:
        await fetch.get(server.url("/nothing"), max_bytes=10, connect_timeout=1, total_timeout=2,
                        ca_bundle=server.cert)
    assert exc.value.label == "http_status"
    server.routes["/ten"] = kit.Route(b"0123456789A")
    with pytest.raises(FetchError) as exc:
        await fetch.get(server.url("/ten"), max_bytes=10, connect_timeout=1, total_timeout=2, ca_bundle=server.cert)
    assert exc.value.label == "oversize"


@pytest.mark.parametrize("size_line", [b"0x1f", b"+1f", b"1_f", b" -1f", b"1f 1"])
async def test_malformed_chunk_size_is_refused(kit, halted, keys, server, size_line):
    """The hand-written client read chunk sizes with int(token, 16), so 0x1f, +1f and 1_f passed."""
    src, state = halted
    data, sig = keys.manifest(6)
    server.publish(data, sig)
    server.routes[PATH] = kit.Route(data, chunked=[(size_line, data)])
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.fetch_failures_total["protocol"] == 1
    assert not state.serving and src.engine.manifest_version == 5


async def test_well_formed_chunked_body_is_read(kit, keys, server, tmp_path):
    state = kit.make_state()
    src = HttpsSource(settings(kit, keys, server, tmp_path), state)
    data, sig = keys.manifest(2)
    server.publish(data, sig)
    half = len(data) // 2
    server.routes[PATH] = kit.Route(data, chunked=[(b"%x" % half, data[:half]),
                                                   (b"%X;ext=1" % (len(data) - half), data[half:])])
    assert await src.poll_once() == "accepted"
    assert state.serving and src.engine.manifest_version == 2


async def test_chunked_body_over_the_cap(kit, halted, keys, server):
    src, state = halted
    big = b"{" + b" " * (70 * 1024) + b"}"
    server.publish(big, sign_blob(keys.private, big))
    step = 8 * 1024
    server.routes[PATH] = kit.Route(big, chunked=[(b"%x" % len(big[i:i + step]), big[i:i + step])
                                                  for i in range(0, len(big), step)])
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.rejected_total["oversize"] == 1 and not state.serving


async def test_compressed_body_is_refused(kit, halted, keys, server):
    """Only identity encoding: a small gzip body could expand past the cap after the check."""
    src, state = halted
    data, sig = keys.manifest(6)
    server.publish(data, sig)
    server.routes[PATH] = kit.Route(data, headers={"Content-Encoding": "gzip"})
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.fetch_failures_total["encoding"] == 1 and not state.serving


async def test_redirect_is_not_followed(kit, keys, server, tmp_path):
    state = kit.make_state()
    src = HttpsSource(settings(kit, keys, server, tmp_path, url=server.url("/moved.json")), state)
    server.publish(*keys.manifest(1))
    server.routes["/moved.json"] = kit.Route(b"", status=302, headers={"Location": server.url(PATH)})
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.fetch_failures_total["http_status"] == 1
    assert server.hits.get(PATH, 0) == 0


async def test_unreachable_server_is_a_connect_failure(kit, keys, tmp_path, tls_files):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state = kit.make_state()
    s = HttpsSourceSettings(url=f"https://127.0.0.1:{port}/revocation.json", public_key=keys.pub_path,
                            key_id=keys.key_id, scope=kit.SCOPE, state_dir=tmp_path / "state",
                            ca_bundle=tls_files[0], connect_timeout=1.0, total_timeout=2.0)
    src = HttpsSource(s, state)
    assert await src.poll_once() == "no_valid_manifest"
    assert src.engine.fetch_failures_total["connect"] == 1 and not state.serving


def test_bad_ca_bundle_is_a_startup_error(kit, keys, server, tmp_path):
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="ca_bundle"):
        HttpsSource(settings(kit, keys, server, tmp_path, ca_bundle=bad), kit.make_state())


def test_settings_validation(kit, keys, server, tmp_path):
    with pytest.raises(ValueError, match="https"):
        settings(kit, keys, server, tmp_path, url="http://example.com/revocation.json")
    with pytest.raises(ValueError, match="key_id"):
        settings(kit, keys, server, tmp_path, key_id="abc")
    bad = settings(kit, keys, server, tmp_path, key_id="0" * 64)
    with pytest.raises(ConfigError, match="key id"):
        HttpsSource(bad, kit.make_state())


async def test_file_source_and_snapshot(kit, keys, tmp_path):
    from swqos_killswitch.sources import FileSource, FileSourceSettings

    state = kit.make_state()
    path = tmp_path / "revocation.json"
    data, sig = keys.manifest(2, revoked_versions=[RELEASE])
    path.write_bytes(data)
    path.with_name("revocation.json.sig").write_bytes(sig)
    src = FileSource(FileSourceSettings(path=path, public_key=keys.pub_path, key_id=keys.key_id, scope=kit.SCOPE,
                                        state_dir=tmp_path / "fs-state"), state)
    assert await src.poll_once() == "accepted"
    assert not state.serving
    snap = src.snapshot()
    assert snap["manifest_version"] == 2 and snap["halted"] and snap["accepted_total"] == 1
    path.unlink()
    assert await src.poll_once() == "no_valid_manifest"
    assert src.snapshot()["fetch_failures_total"] == {"read": 1} and not state.serving
