"""The plugin's hooks through the kernel: the entry point, the commands, the metrics collector and
the status section, and that the kernel itself no longer knows a kill switch."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from swqos_core import cli, config
from swqos_core.extensions import MetricsCollector
from swqos_core.plugins import build_app, collect_contributions, load_plugins
from swqos_killswitch.metrics import FAMILIES
from swqos_killswitch.sources import FileSource

ROOT = Path(__file__).resolve().parents[3]


def file_source_config(kit, keys, tmp_path, plugins=("killswitch",)) -> dict:
    return {
        "swqos": {"plugins": list(plugins)},
        "proxy": {"tls_cert": "c", "tls_key": "k", "enclave": "unix:///x"},
        "pipeline": {"auth": [], "revocation": ["file"]},
        "layers": {"revocation": {"file": {
            "path": str(tmp_path / "revocation.json"), "public_key": str(keys.pub_path), "key_id": keys.key_id,
            "scope": kit.SCOPE, "state_dir": str(tmp_path / "state")}}},
    }


def app_for(kit, keys, tmp_path, state, **kw):
    cfg = config.parse(file_source_config(kit, keys, tmp_path, **kw), path=tmp_path / "proxy.toml", process="proxy")
    return build_app(cfg, state=state)


def test_entry_point_loads_the_plugin():
    _, loaded, problems = load_plugins(["killswitch"])
    assert problems == []
    mine = next(p for p in loaded if p.name == "killswitch")
    assert mine.distribution == "swqos-killswitch"


def test_revocation_sources_need_the_plugin(kit, keys, tmp_path, state):
    from swqos_core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown implementation 'file'"):
        app_for(kit, keys, tmp_path, state, plugins=())


def test_kernel_has_no_kill_switch():
    core = ROOT / "swqos_core"
    assert not (core / "killswitch").exists() and not (core / "release.py").exists()
    offenders = [str(p) for p in core.rglob("*.py") if re.search(r"^\s*(from|import) swqos_killswitch", p.read_text(),
                                                                   re.M)]
    assert offenders == []


async def test_metrics_and_status_through_the_kernel(kit, keys, tmp_path, state):
    data, sig = keys.manifest(3, revoked_versions=[kit.RELEASE])
    (tmp_path / "revocation.json").write_bytes(data)
    (tmp_path / "revocation.json.sig").write_bytes(b"not base64 at all")
    app = app_for(kit, keys, tmp_path, state)
    contributions = collect_contributions(app)
    (owner, collector), = [(o, c) for o, c in contributions.metrics if o == "killswitch"]
    assert isinstance(collector, MetricsCollector)
    source = app.one("revocation")
    assert isinstance(source, FileSource)

    assert await source.poll_once() == "no_valid_manifest"  # bad signature first
    (tmp_path / "revocation.json.sig").write_bytes(sig)
    assert await source.poll_once() == "accepted"
    samples = {(name, labels): value for name, labels, value in collector.collect()}
    declared = {f.name: f for f in collector.families}
    assert all(name in declared and len(labels) == len(declared[name].labels) for name, labels in samples)
    assert samples[("swqos_kill_switch_manifest_version", ("file",))] == 3
    assert samples[("swqos_kill_switch_halted", ("file",))] == 1
    assert samples[("swqos_kill_switch_stale", ("file",))] == 0
    assert samples[("swqos_kill_switch_polls", ("file",))] == 2
    assert samples[("swqos_kill_switch_rejected", ("file", "malformed_signature"))] == 1
    assert ("swqos_kill_switch_last_success_timestamp_seconds", ("file",)) in samples

    owner, report = contributions.status["kill_switch"]
    assert owner == "killswitch"
    section = report()["file"]
    assert section["manifest_version"] == 3 and section["halted"] and not section["stale"]
    assert "is revoked" in section["halt_reason"] and section["last_success_unix"] is not None


def test_metric_names_are_the_documented_ones():
    """docs/operations.md lists each kill-switch metric; the collector must emit exactly those."""
    doc = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"`(swqos_kill_switch_[a-z_]+)`", doc))
    emitted = {f.name + ("_total" if f.kind == "counter" else "") for f in FAMILIES}
    assert emitted == documented


def test_commands_come_through_the_kernel_cli(tmp_path, capsys):
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    assert cli.main(["manifest", "keygen", "--out", str(key), "--out-pub", str(pub)]) == 0
    assert key.stat().st_mode & 0o777 == 0o600 and pub.exists()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["release", "--help"])
    assert "manifest" in capsys.readouterr().out
    assert cli.main(["verify-release"]) == 2


async def test_poll_admin_operation(kit, keys, tmp_path, state):
    from swqos_core.extensions import Actor, AdminError

    data, sig = keys.manifest(1)
    (tmp_path / "revocation.json").write_bytes(data)
    (tmp_path / "revocation.json.sig").write_bytes(sig)
    app = app_for(kit, keys, tmp_path, state)
    contributions = collect_contributions(app)
    owner, op = contributions.admin_operations["kill-switch-poll"]
    assert owner == "killswitch" and op.mutating
    source = app.one("revocation")
    await source.start()
    try:
        async with asyncio.timeout(20):
            while source.engine.polls_total == 0:
                await asyncio.sleep(0.01)
        before = source.engine.polls_total
        actor = Actor("token", "ops")
        assert await op.handler({}, actor) == {"polling": ["file"]}
        async with asyncio.timeout(20):  # the default poll_interval is 60 s: this is the wake
            while source.engine.polls_total == before:
                await asyncio.sleep(0.01)
        with pytest.raises(AdminError) as exc:
            await op.handler({"source": "nope"}, actor)
        assert exc.value.status == 404
        with pytest.raises(AdminError) as exc:
            await op.handler({"everything": True}, actor)
        assert exc.value.status == 400
    finally:
        await source.close()
