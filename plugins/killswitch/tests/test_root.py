"""The trust root document, the signature bundle, and the pin checked at install."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from swqos_killswitch.bundle import MAX_SIGNATURES, dump_bundle, parse_signatures
from swqos_killswitch.root import RootError, build_root, parse_root
from swqos_killswitch.signing import SignatureError, key_id, public_key_pem, sign_blob
from swqos_killswitch.trust import tally, verify_first_root


def _keys(n):
    return [ec.generate_private_key(ec.SECP256R1()) for _ in range(n)]


def _root(kit, **over):
    r, m = _keys(2), _keys(3)
    kw = dict(version=1, scope=kit.SCOPE, issued_at=kit.now(), expires=kit.now() + dt.timedelta(days=1),
              root_keys=[k.public_key() for k in r], root_threshold=2, manifest_keys=[k.public_key() for k in m],
              halt_threshold=2, lift_threshold=3, lift_timelock_seconds=3600)
    kw.update(over)
    return build_root(**kw)


def test_root_round_trip(kit, root):
    parsed = parse_root(root.data)
    assert parsed.version == 1 and parsed.root.threshold == 2 and parsed.halt_threshold == 2
    assert parsed.lift_threshold == 3 and len(parsed.manifest_keyids) == 3
    assert parsed.sha256 == root.sha256
    assert set(parsed.root.keyids).isdisjoint(parsed.manifest_keyids)


@pytest.mark.parametrize("over,match", [
    ({"root_threshold": 3}, "root.threshold"),
    ({"halt_threshold": 0}, "halt_threshold"),
    ({"halt_threshold": 3, "lift_threshold": 2}, "lift_threshold"),
    ({"lift_threshold": 4}, "lift_threshold"),
    ({"lift_timelock_seconds": 31 * 24 * 3600}, "lift_timelock_seconds"),
])
def test_root_builder_refuses_bad_thresholds(kit, over, match):
    with pytest.raises(RootError, match=match):
        _root(kit, **over)


def test_root_refuses_overlapping_roles(kit):
    shared = _keys(1)[0].public_key()
    with pytest.raises(RootError, match="must not also be a manifest key"):
        _root(kit, root_keys=[shared], root_threshold=1, manifest_keys=[shared], halt_threshold=1, lift_threshold=1)


def _edit(data: bytes, fn) -> bytes:
    obj = json.loads(data)
    fn(obj)
    return json.dumps(obj).encode()


@pytest.mark.parametrize("label,edit", [
    ("wrong_key_id", lambda o: o["keys"].update({"0" * 64: next(iter(o["keys"].values()))})
     or o["manifest"]["keyids"].append("0" * 64)),
    ("wrong_type", lambda o: o.update(_type="swqos/revocation-manifest/v1")),
    ("invalid_root", lambda o: o.update(extra=1)),
    ("invalid_root", lambda o: o["root"]["keyids"].append(o["root"]["keyids"][0])),
    ("invalid_root", lambda o: o["manifest"]["keyids"].append("ab" * 32)),
    ("invalid_root", lambda o: o.update(version=True)),
    ("invalid_root", lambda o: o.update(expires=o["issued_at"])),
])
def test_root_parser_refusals(kit, label, edit):
    with pytest.raises(RootError) as exc:
        parse_root(_edit(_root(kit), edit))
    assert exc.value.label == label


def test_root_parser_refuses_duplicate_keys_and_junk(kit):
    data = _root(kit)
    with pytest.raises(RootError) as exc:
        parse_root(data.replace(b'"version": 1', b'"version": 1, "version": 2', 1))
    assert exc.value.label == "malformed_root"
    with pytest.raises(RootError):
        parse_root(b"<html>")


def test_pin_mismatch_and_missing_self_signatures(kit, root):
    with pytest.raises(RootError) as exc:
        verify_first_root(root.data, root.sig, "0" * 64)
    assert exc.value.label == "root_pin_mismatch"
    one = kit.bundle(root.data, root.root_keys[:1])
    with pytest.raises(RootError) as exc:
        verify_first_root(root.data, one, root.sha256)
    assert exc.value.label == "root_below_threshold"
    assert verify_first_root(root.data, root.sig, root.sha256.upper()).root.version == 1


def test_bare_signature_is_a_one_entry_bundle(keys):
    data, sig = keys.manifest(1)
    entries = parse_signatures(sig, data)
    assert len(entries) == 1 and entries[0].keyid is None
    t = tally(data, sig, {keys.key_id: keys.private.public_key()})
    assert t.valid == (keys.key_id,) and t.ignored == ()


def test_bundle_with_too_many_entries(root):
    data, _ = root.manifest(1)
    a = root.manifest_keys[0]
    entry = (key_id(a.public_key()), sign_blob(a, data))
    with pytest.raises(SignatureError) as exc:
        parse_signatures(dump_bundle(data, [entry] * (MAX_SIGNATURES + 1)), data)
    assert exc.value.label == "malformed_signature"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_every_bundle_signature_verifies_with_openssl(root, tmp_path):
    """Each entry is exactly a cosign sign-blob signature: openssl dgst -sha256 -verify accepts it."""
    data, sig = root.manifest(1, by=[0, 1, 2])
    doc = tmp_path / "revocation.json"
    doc.write_bytes(data)
    entries = json.loads(sig)["signatures"]
    assert len(entries) == 3
    by_id = {key_id(k.public_key()): k for k in root.manifest_keys}
    for i, entry in enumerate(entries):
        pub, der = tmp_path / f"k{i}.pub", tmp_path / f"s{i}.der"
        pub.write_bytes(public_key_pem(by_id[entry["keyid"]].public_key()))
        der.write_bytes(base64.b64decode(entry["sig"]))
        ok = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(der), str(doc)],
                            capture_output=True, text=True, check=False)
        assert ok.returncode == 0 and "Verified OK" in ok.stdout
    # ...and openssl refuses it over other bytes, so the check above can fail.
    doc.write_bytes(data + b" ")
    bad = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "k0.pub"), "-signature",
                          str(tmp_path / "s0.der"), str(doc)], capture_output=True, text=True, check=False)
    assert bad.returncode != 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_openssl_signature_counts_in_a_bundle(root, tmp_path):
    """The other way round: a signer using plain openssl produces a signature our bundle accepts."""
    from cryptography.hazmat.primitives import serialization

    data, _ = root.manifest(1)
    doc = tmp_path / "m.json"
    doc.write_bytes(data)
    pems = []
    for i, k in enumerate(root.manifest_keys[:2]):
        pem = tmp_path / f"k{i}.pem"
        pem.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        pems.append(pem)
    entries = []
    for i, pem in enumerate(pems):
        out = tmp_path / f"s{i}.der"
        subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(pem), "-out", str(out), str(doc)], check=True)
        entries.append((key_id(root.manifest_keys[i].public_key()), base64.b64encode(out.read_bytes())))
    keys = {key_id(k.public_key()): k.public_key() for k in root.manifest_keys}
    assert len(tally(data, dump_bundle(data, entries), keys).valid) == 2
