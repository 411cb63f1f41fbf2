"""The operator commands, run through the real `swqos` command line."""

from __future__ import annotations

import json

from kmsnitro_helpers import REAL_DOC_TIMESTAMP_MS, REAL_PCR0, Sealed

from swqos_core.cli import main
from swqos_core.identity import generate_keypair_file, to_base58
from swqos_kms_nitro.fake_nsm import FakeNsm


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


def test_attest_verify_base64_and_test_root(tmp_path, pki, capsys):
    nsm = FakeNsm(pki)
    path = tmp_path / "doc.b64"
    import base64
    path.write_text(base64.b64encode(nsm.document(nonce=b"\x01\x02")).decode())
    root = tmp_path / "root.pem"
    root.write_bytes(pki.root_pem)
    assert main(["attest", "verify", str(path), "--nonce", "0102", "--root", str(root),
                 "--root-sha256", pki.root_sha256]) == 0
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


def test_kms_seal_then_boot(kms, tmp_path, pki_dir, capsys, monkeypatch):
    # `kms seal` uses boto3's usual credential chain; the fake KMS checks only that a signature is there.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    keyfile = tmp_path / "id.json"
    public = generate_keypair_file(keyfile)
    s = Sealed(kms, tmp_path, pki_dir)  # for its key (policy pins its own validator; use an open one)
    key = kms.create_key({"Statement": [{"Effect": "Allow", "Action": "kms:*"}]})
    out = tmp_path / "sealed.bin"
    assert main(["kms", "seal", "--key-id", key.arn, "--identity-key", str(keyfile), "--context", "cluster=dev",
                 "--out", str(out), "--region", kms.region, "--endpoint-url", kms.endpoint_url]) == 0, \
        capsys.readouterr().err
    assert f'expected_public_key = "{to_base58(public)}"' in capsys.readouterr().out
    provider = s.provider(expected_public_key=to_base58(public), key_id=key.arn, ciphertext_file=out,
                          encryption_context={"cluster": "dev"})
    assert provider.load().origin.endswith(key.arn)
