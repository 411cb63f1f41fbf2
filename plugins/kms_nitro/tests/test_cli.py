"""The operator commands, run through the real `swqos` command line."""

from __future__ import annotations

import json

from swqos_core.cli import main
from swqos_core.identity import generate_keypair_file, to_base58
from swqos_kms_nitro.fake_nsm import FakeNsm

from .kmsnitro_helpers import REAL_DOC_TIMESTAMP_MS, REAL_PCR0, Sealed


def _doc_file(tmp_path, real_doc):
    path = tmp_path / "doc.cbor"
    path.write_bytes(real_doc)
    return str(path)


def test_attest_verify_real_document(tmp_path, real_doc, capsys):
    doc = _doc_file(tmp_path, real_doc)
    assert main(["attest", "verify", doc, "--at", "document", "--expect-pcr", f"0={REAL_PCR0}"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] and out["pcrs"]["0"] == REAL_PCR0
    assert main(["attest", "verify", doc, "--at", str(REAL_DOC_TIMESTAMP_MS), "--max-age", "60"]) == 0


def test_attest_verify_refusals(tmp_path, real_doc, capsys):
    doc = _doc_file(tmp_path, real_doc)
    assert main(["attest", "verify", doc]) == 1  # now: the leaf expired long ago
    assert "REFUSED: document certificate is not valid" in capsys.readouterr().err
    assert main(["attest", "verify", doc, "--at", "document", "--expect-pcr", "0=" + "ab" * 48]) == 1
    assert "PCR0 does not match" in capsys.readouterr().err
    assert main(["attest", "verify", doc, "--at", "document", "--nonce", "00ff"]) == 1
    assert "nonce does not match" in capsys.readouterr().err
    assert main(["attest", "verify", doc, "--at", "2025-09-09T18:30:00Z", "--max-age", "60"]) == 1
    assert "older than 60 s" in capsys.readouterr().err


def test_attest_verify_base64_and_test_root(tmp_path, fake_nsm_pki, capsys):
    nsm = FakeNsm(fake_nsm_pki)
    path = tmp_path / "doc.b64"
    import base64
    path.write_text(base64.b64encode(nsm.document(nonce=b"\x01\x02")).decode())
    root = tmp_path / "root.pem"
    root.write_bytes(fake_nsm_pki.root_pem)
    assert main(["attest", "verify", str(path), "--nonce", "0102", "--root", str(root),
                 "--root-sha256", fake_nsm_pki.root_sha256]) == 0
    capsys.readouterr()
    assert main(["attest", "verify", str(path), "--root", str(root)]) == 2  # a root must be pinned
    assert main(["attest", "verify", str(path)]) == 1  # not the AWS root


def test_kms_policy(capsys):
    assert main(["kms", "policy", "--pcr0", "aa" * 48, "--pcr0", "bb" * 48, "--pcr1", "cc" * 48,
                 "--role-arn", "arn:aws:iam::123456789012:role/enclave"]) == 0
    doc = json.loads(capsys.readouterr().out)
    allow = next(s for s in doc["Statement"] if s["Effect"] == "Allow" and s["Action"] == "kms:Decrypt")
    assert allow["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:ImageSha384"] == ["aa" * 48, "bb" * 48]
    assert any(s["Effect"] == "Deny" and "StringNotEqualsIgnoreCase" in s.get("Condition", {}) for s in doc["Statement"])
    assert main(["kms", "policy", "--pcr0", "00" * 48, "--role-arn", "arn:aws:iam::1:role/x"]) == 2


def test_kms_seal_then_boot(fake_kms, tmp_path, fake_nsm_dir, capsys, monkeypatch):
    # `kms seal` uses boto3's usual credential chain; the fake KMS checks only that a signature is there.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    keyfile = tmp_path / "id.json"
    public = generate_keypair_file(keyfile)
    s = Sealed(fake_kms, tmp_path, fake_nsm_dir)  # for its key (policy pins its own validator; use an open one)
    key = fake_kms.create_key({"Statement": [{"Effect": "Allow", "Action": "kms:*"}]})
    out = tmp_path / "sealed.bin"
    assert main(["kms", "seal", "--kms-key", key.arn, "--identity-key", str(keyfile), "--context", "cluster=dev",
                 "--out", str(out), "--region", fake_kms.region, "--endpoint-url", fake_kms.endpoint_url]) == 0, \
        capsys.readouterr().err
    assert f'expected_public_key = "{to_base58(public)}"' in capsys.readouterr().out
    provider = s.provider(expected_public_key=to_base58(public), key_id=key.arn, ciphertext_file=out,
                          encryption_context={"cluster": "dev"})
    assert provider.load().origin.endswith(key.arn)


def _fake_doc(tmp_path, fake_nsm_pki, public_key: bytes) -> tuple[str, list[str]]:
    path = tmp_path / "doc.cbor"
    path.write_bytes(FakeNsm(fake_nsm_pki).document(public_key=public_key, nonce=b"\x07"))
    root = tmp_path / "root.pem"
    root.write_bytes(fake_nsm_pki.root_pem)
    return str(path), ["--root", str(root), "--root-sha256", fake_nsm_pki.root_sha256]


def test_attest_verify_validator_is_base58(tmp_path, fake_nsm_pki, capsys):
    import os

    identity = os.urandom(32)
    doc, root = _fake_doc(tmp_path, fake_nsm_pki, identity)
    assert main(["attest", "verify", doc, *root, "--validator", to_base58(identity)]) == 0
    assert json.loads(capsys.readouterr().out)["public_key"] == identity.hex()
    assert main(["attest", "verify", doc, *root, "--validator", to_base58(os.urandom(32))]) == 1
    assert "public_key does not match" in capsys.readouterr().err
    assert main(["attest", "verify", doc, *root, "--validator", identity.hex()]) == 2  # hex is not the format
    assert "--validator wants a base58 Ed25519 public key" in capsys.readouterr().err


def test_attest_verify_bad_values_name_their_flag(tmp_path, fake_nsm_pki, capsys):
    doc, root = _fake_doc(tmp_path, fake_nsm_pki, b"\x01" * 32)
    assert main(["attest", "verify", doc, *root, "--nonce", "zz"]) == 2
    assert "--nonce wants hex, got 'zz'" in capsys.readouterr().err
    assert main(["attest", "verify", doc, *root, "--at", "yesterday"]) == 2
    assert "--at wants 'document'" in capsys.readouterr().err


def test_file_errors_name_their_path(tmp_path, fake_nsm_pki, capsys, monkeypatch):
    missing = tmp_path / "missing.cbor"
    assert main(["attest", "verify", str(missing)]) == 2
    assert f"cannot read document {missing}: No such file or directory" in capsys.readouterr().err
    doc, _ = _fake_doc(tmp_path, fake_nsm_pki, b"\x01" * 32)
    no_root = tmp_path / "no-root.pem"
    assert main(["attest", "verify", doc, "--root", str(no_root), "--root-sha256", "00" * 32]) == 2
    assert f"cannot read root certificate {no_root}" in capsys.readouterr().err
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    no_key = tmp_path / "no-id.json"
    assert main(["kms", "seal", "--kms-key", "arn:aws:kms:eu-west-1:111122223333:key/x", "--identity-key",
                 str(no_key), "--out", str(tmp_path / "s.bin"), "--region", "eu-west-1"]) == 2
    assert f"cannot read identity key {no_key}: No such file or directory" in capsys.readouterr().err


def test_kms_seal_unwritable_out_names_it(fake_kms, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    keyfile = tmp_path / "id.json"
    generate_keypair_file(keyfile)
    key = fake_kms.create_key({"Statement": [{"Effect": "Allow", "Action": "kms:*"}]})
    out = tmp_path / "no-such-dir" / "sealed.bin"
    assert main(["kms", "seal", "--kms-key", key.arn, "--identity-key", str(keyfile), "--out", str(out),
                 "--region", fake_kms.region, "--endpoint-url", fake_kms.endpoint_url]) == 2
    assert f"cannot write {out}: No such file or directory" in capsys.readouterr().err


def _subcommands():
    import argparse

    from swqos_kms_nitro.cli import add_commands

    p = argparse.ArgumentParser(prog="swqos")
    sub = p.add_subparsers()
    add_commands(sub)
    for top in ("attest", "kms"):
        (inner,) = [a for a in sub.choices[top]._actions if isinstance(a, argparse._SubParsersAction)]
        yield from ((f"{top} {name}", parser) for name, parser in inner.choices.items())


def test_every_option_has_help_and_the_shared_names():
    import argparse

    flags = set()
    for name, parser in _subcommands():
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"swqos {name} {action.dest} has no help"
                flags.update(action.option_strings)
    assert {"--dev-dir", "--out", "--validator"} <= flags
    assert not flags & {"--dir", "--output", "--out-key", "--public-key", "--key-id"}
