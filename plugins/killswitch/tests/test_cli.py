"""``swqos manifest ...`` through an argparse parser built with add_commands()."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from swqos_killswitch.cli import add_commands


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="swqos")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def keypair(tmp_path, capsys):
    key, pub = tmp_path / "r.key", tmp_path / "r.pub"
    assert run("manifest", "keygen", "--out", str(key), "--out-pub", str(pub)) == 0
    kid = next(line.split()[-1] for line in capsys.readouterr().out.splitlines() if line.startswith("key_id"))
    return key, pub, kid


def test_keygen_sign_verify_show(tmp_path, keypair, capsys):
    key, pub, kid = keypair
    assert key.stat().st_mode & 0o777 == 0o600
    out = tmp_path / "revocation.json"
    assert run("manifest", "sign", "--key", str(key), "--out", str(out), "--version", "3", "--scope", "prod",
               "--revoke-version", "1.3.1", "--reason", "CVE-1") == 0
    manifest = json.loads(out.read_bytes())
    assert manifest["version"] == 3 and manifest["revoked_versions"] == ["1.3.1"] and manifest["key_id"] == kid
    # The signature file is what cosign verify-blob reads: base64 DER over SHA-256 of the exact bytes.
    der = base64.b64decode((tmp_path / "revocation.json.sig").read_bytes().strip(), validate=True)
    pubkey = serialization.load_pem_public_key(pub.read_bytes())
    pubkey.verify(der, hashlib.sha256(out.read_bytes()).digest(), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    capsys.readouterr()
    assert run("manifest", "verify", "--public-key", str(pub), "--key-id", kid, "--manifest", str(out),
               "--scope", "prod") == 0
    assert "OK" in capsys.readouterr().out
    assert run("manifest", "verify", "--public-key", str(pub), "--manifest", str(out), "--scope", "staging") == 1
    assert run("manifest", "show", str(out), "--public-key", str(pub)) == 0
    assert '"version": 3' in capsys.readouterr().out


def test_verify_refuses_tampering_and_other_keys(tmp_path, keypair, capsys):
    key, pub, _ = keypair
    out = tmp_path / "m.json"
    assert run("manifest", "sign", "--key", str(key), "--out", str(out), "--version", "1", "--scope", "prod") == 0
    out.write_bytes(out.read_bytes().replace(b'"version": 1', b'"version": 2'))
    assert run("manifest", "verify", "--public-key", str(pub), "--manifest", str(out)) == 1
    assert "REFUSED" in capsys.readouterr().err
    other_key, other_pub = tmp_path / "o.key", tmp_path / "o.pub"
    run("manifest", "keygen", "--out", str(other_key), "--out-pub", str(other_pub))
    assert run("manifest", "sign", "--key", str(key), "--out", str(out), "--version", "2", "--scope", "prod") == 0
    assert run("manifest", "verify", "--public-key", str(other_pub), "--manifest", str(out)) == 1


def test_sign_existing_file_as_is_and_refuse_invalid(tmp_path, keypair):
    key, pub, _ = keypair
    src = tmp_path / "hand.json"
    src.write_bytes(json.dumps({
        "_type": "swqos/revocation-manifest/v1", "version": 9, "scope": "prod",
        "issued_at": "2026-01-01T00:00:00Z", "expires": "2099-01-01T00:00:00Z", "action": "halt",
        "revoked_versions": [], "revoked_measurements": []}).encode())
    before = src.read_bytes()
    assert run("manifest", "sign", "--key", str(key), "--input", str(src)) == 0
    assert src.read_bytes() == before  # exact bytes signed, file untouched
    assert run("manifest", "verify", "--public-key", str(pub), "--manifest", str(src)) == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"revoked_eif_versions": ["1.3.1"], "action": "halt"}')
    assert run("manifest", "sign", "--key", str(key), "--input", str(bad)) == 1
    assert not (tmp_path / "bad.json.sig").exists()


def test_keygen_refuses_to_overwrite(tmp_path, keypair):
    key, _, _ = keypair
    assert run("manifest", "keygen", "--out", str(key), "--out-pub", str(tmp_path / "x.pub")) == 1


def test_encrypted_key(tmp_path, monkeypatch):
    monkeypatch.setenv("KS_PW", "correct horse")
    key, pub = tmp_path / "e.key", tmp_path / "e.pub"
    assert run("manifest", "keygen", "--out", str(key), "--out-pub", str(pub), "--password-env", "KS_PW") == 0
    assert b"ENCRYPTED" in key.read_bytes()
    out = tmp_path / "m.json"
    assert run("manifest", "sign", "--key", str(key), "--password-env", "KS_PW", "--out", str(out),
               "--version", "1", "--scope", "prod") == 0
    assert run("manifest", "sign", "--key", str(key), "--out", str(out), "--version", "1", "--scope", "prod") == 1


@pytest.mark.slow
def test_drill(capsys):
    assert run("manifest", "drill", "--interval", "0.5") == 0
    out = capsys.readouterr().out
    for step in ("1. generate", "4. revoke", "5. restart", "6. replay", "7. publish", "drill PASSED"):
        assert step in out
    assert "FAIL" not in out
