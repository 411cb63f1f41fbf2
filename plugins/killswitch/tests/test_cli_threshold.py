"""``swqos manifest root init | sign | rotate | show``, bundles with ``manifest sign``, ``verify`` reports
and ``drill --threshold``, through the same argparse tree ``swqos`` builds."""

from __future__ import annotations

import argparse
import json

import pytest

from swqos_killswitch.cli import add_commands
from swqos_killswitch.root import parse_root
from swqos_killswitch.trust import RootTrust, verify_first_root, verify_next_root


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="swqos")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def ceremony(tmp_path, capsys):
    """Five key holders: r1, r2 (root keys), m1..m3 (manifest keys), each a keygen on its own."""
    d = tmp_path / "keys"
    d.mkdir()
    names = ["r1", "r2", "m1", "m2", "m3"]
    for n in names:
        assert run("manifest", "keygen", "--out", str(d / f"{n}.key"), "--out-pub", str(d / f"{n}.pub")) == 0
    capsys.readouterr()
    return d


def init_root(tmp_path, d, capsys, **over) -> str:
    args = {"--halt-threshold": "2", "--lift-threshold": "3", "--lift-timelock-hours": "1", **over}
    argv = ["manifest", "root", "init", "--scope", "prod", "--root-key", str(d / "r1.pub"),
            "--root-key", str(d / "r2.pub"), "--root-threshold", "2", "--manifest-key", str(d / "m1.pub"),
            "--manifest-key", str(d / "m2.pub"), "--manifest-key", str(d / "m3.pub"),
            "--out", str(tmp_path / "root.json")]
    for k, v in args.items():
        argv += [k, v]
    assert run(*argv) == 0
    out = capsys.readouterr().out
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("sha256:"))


def test_root_ceremony_init_sign_show(tmp_path, ceremony, capsys):
    d = ceremony
    pin = init_root(tmp_path, d, capsys)
    root = tmp_path / "root.json"
    assert run("manifest", "root", "show", str(root)) == 1  # nobody signed yet
    assert "NOT USABLE" in capsys.readouterr().err
    assert run("manifest", "root", "sign", "--key", str(d / "r1.key"), "--root", str(root)) == 0
    assert run("manifest", "root", "sign", "--key", str(d / "r1.key"), "--root", str(root)) == 1  # twice
    assert "already holds a signature" in capsys.readouterr().err
    assert run("manifest", "root", "sign", "--key", str(d / "m1.key"), "--root", str(root)) == 1  # wrong role
    assert "not a root key" in capsys.readouterr().err
    assert run("manifest", "root", "show", str(root)) == 1  # 1 of 2
    capsys.readouterr()
    assert run("manifest", "root", "sign", "--key", str(d / "r2.key"), "--root", str(root)) == 0
    capsys.readouterr()
    assert run("manifest", "root", "show", str(root), "--pin", pin) == 0
    out = capsys.readouterr().out
    assert f"pin sha256 {pin}" in out
    assert run("manifest", "root", "show", str(root), "--pin", "0" * 64) == 1
    link = verify_first_root(root.read_bytes(), (tmp_path / "root.json.sig").read_bytes(), pin)
    assert link.root.halt_threshold == 2 and link.root.lift_timelock_seconds == 3600


def test_init_refuses_bad_thresholds(tmp_path, ceremony, capsys):
    argv = ["manifest", "root", "init", "--scope", "prod", "--root-key", str(ceremony / "r1.pub"),
            "--root-threshold", "1", "--manifest-key", str(ceremony / "m1.pub"), "--halt-threshold", "2",
            "--lift-threshold", "2", "--lift-timelock-hours", "1", "--out", str(tmp_path / "r.json")]
    assert run(*argv) == 1
    assert "halt_threshold" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


def signed_root(tmp_path, d, capsys) -> tuple[str, str]:
    pin = init_root(tmp_path, d, capsys)
    for k in ("r1", "r2"):
        assert run("manifest", "root", "sign", "--key", str(d / f"{k}.key"), "--root", str(tmp_path / "root.json")) == 0
    capsys.readouterr()
    return str(tmp_path / "root.json"), pin


def test_bundle_signing_and_verify_reports_thresholds(tmp_path, ceremony, capsys):
    d = ceremony
    root, pin = signed_root(tmp_path, d, capsys)
    m = tmp_path / "revocation.json"
    assert run("manifest", "sign", "--key", str(d / "m1.key"), "--bundle", "--out", str(m), "--version", "4",
               "--scope", "prod", "--revoke-version", "1.3.1") == 0
    capsys.readouterr()
    assert run("manifest", "verify", "--root", root, "--root-sha256", pin, "--manifest", str(m)) == 1
    err = capsys.readouterr()
    report = json.loads(err.out)
    assert report["halt_threshold_met"] is False and len(report["signed_by"]) == 1
    assert "below_threshold" in err.err
    assert run("manifest", "sign", "--key", str(d / "m2.key"), "--input", str(m)) == 0  # extends the bundle
    assert run("manifest", "sign", "--key", str(d / "m2.key"), "--input", str(m)) == 1  # same signer twice
    assert run("manifest", "sign", "--key", str(d / "r1.key"), "--input", str(m)) == 0  # a root key can sign...
    capsys.readouterr()
    assert run("manifest", "verify", "--root", root, "--manifest", str(m), "--scope", "prod") == 0
    report = json.loads(capsys.readouterr().out.split("\nOK:")[0])
    assert report["halt_threshold_met"] and not report["lift_threshold_met"] and len(report["signed_by"]) == 2
    assert report["ignored"][0]["reason"] == "wrong_role"  # ...but it does not count, and verify says so
    assert run("manifest", "verify", "--root", root, "--manifest", str(m), "--lift") == 1
    assert "below_lift_threshold" in capsys.readouterr().err


def test_lift_bundle_with_timelock(tmp_path, ceremony, capsys):
    d = ceremony
    root, _ = signed_root(tmp_path, d, capsys)
    m = tmp_path / "lift.json"
    assert run("manifest", "sign", "--key", str(d / "m1.key"), "--bundle", "--out", str(m), "--version", "5",
               "--scope", "prod", "--not-before-in-hours", "0.5") == 0
    for k in ("m2", "m3"):
        assert run("manifest", "sign", "--key", str(d / f"{k}.key"), "--input", str(m)) == 0
    capsys.readouterr()
    assert run("manifest", "verify", "--root", root, "--manifest", str(m), "--lift") == 1  # 30 min < 1 h timelock
    assert "lift_without_timelock" in capsys.readouterr().err
    assert run("manifest", "sign", "--key", str(d / "m1.key"), "--bundle", "--out", str(m), "--version", "6",
               "--scope", "prod", "--not-before-in-hours", "1") == 0
    for k in ("m2", "m3"):
        assert run("manifest", "sign", "--key", str(d / f"{k}.key"), "--input", str(m)) == 0
    capsys.readouterr()
    assert run("manifest", "verify", "--root", root, "--manifest", str(m), "--lift") == 0
    report = json.loads(capsys.readouterr().out.split("\nOK:")[0])
    assert report["lift_threshold_met"] and report["lift_timelock_met"] and report["lift_effective_from"]


def test_sign_refuses_a_bundle_for_other_bytes(tmp_path, ceremony, capsys):
    d = ceremony
    m = tmp_path / "m.json"
    assert run("manifest", "sign", "--key", str(d / "m1.key"), "--bundle", "--out", str(m), "--version", "1",
               "--scope", "prod") == 0
    m.write_bytes(m.read_bytes().replace(b'"version": 1', b'"version": 2'))
    capsys.readouterr()
    assert run("manifest", "sign", "--key", str(d / "m2.key"), "--input", str(m)) == 1
    assert "different bytes" in capsys.readouterr().err


def test_rotation_by_threshold_of_old_and_new_root_keys(tmp_path, ceremony, capsys):
    d = ceremony
    root, _ = signed_root(tmp_path, d, capsys)
    assert run("manifest", "keygen", "--out", str(d / "r3.key"), "--out-pub", str(d / "r3.pub")) == 0
    assert run("manifest", "keygen", "--out", str(d / "m4.key"), "--out-pub", str(d / "m4.pub")) == 0
    new = tmp_path / "2.root.json"
    # r2 was lost: replace it by r3, and m3 by m4.
    assert run("manifest", "root", "rotate", "--from", root, "--out", str(new), "--remove-root-key", str(d / "r2.pub"),
               "--add-root-key", str(d / "r3.pub"), "--remove-manifest-key", str(d / "m3.pub"),
               "--add-manifest-key", str(d / "m4.pub")) == 0
    capsys.readouterr()
    for k in ("r1", "r3"):  # the new root's keys
        assert run("manifest", "root", "sign", "--key", str(d / f"{k}.key"), "--root", str(new), "--previous", root) == 0
    capsys.readouterr()
    assert run("manifest", "root", "show", str(new), "--previous", root) == 1  # only r1 of the old root's keys
    assert "fewer than 2 signatures of v1" in capsys.readouterr().err
    assert run("manifest", "root", "sign", "--key", str(d / "r2.key"), "--root", str(new), "--previous", root) == 0
    capsys.readouterr()
    assert run("manifest", "root", "show", str(new), "--previous", root) == 0
    first = verify_first_root((tmp_path / "root.json").read_bytes(), (tmp_path / "root.json.sig").read_bytes(),
                              parse_root((tmp_path / "root.json").read_bytes()).sha256)
    trust = RootTrust([first])
    link = verify_next_root(trust.current, new.read_bytes(), (tmp_path / "2.root.json.sig").read_bytes(), now=None)
    assert link.root.version == 2 and len(link.root.manifest_keyids) == 3


@pytest.mark.slow
def test_threshold_drill(capsys):
    assert run("manifest", "drill", "--threshold", "--interval", "0.5", "--timelock", "2") == 0
    out = capsys.readouterr().out
    for step in ("below_threshold", "time to halt:", "below_lift_threshold", "held by its timelock", "time to lift:",
                 "threshold drill PASSED"):
        assert step in out
    assert "FAIL" not in out
