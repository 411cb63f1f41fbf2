"""Release integrity: installed swqos files against their RECORD and a signed release manifest.

Uses a throw-away site-packages directory holding a real wheel-style installation (dist-info with
METADATA, RECORD, top_level.txt), so files can be tampered with without touching the real env.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
from pathlib import Path

import pytest

from swqos_core.errors import ConfigError
from swqos_killswitch.release import add_commands, check_release, create_release_manifest, enforce_release, records_check
from swqos_killswitch.signing import sign_blob


def _h(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install(site: Path, name: str, version: str, files: dict[str, bytes]) -> None:
    """Lay out what pip would for a wheel of ``name`` (package = name with dashes as underscores)."""
    top = name.replace("-", "_")
    info = f"{top}-{version}.dist-info"
    all_files = {f"{top}/{k}": v for k, v in files.items()}
    all_files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    all_files[f"{info}/top_level.txt"] = f"{top}\n".encode()
    all_files[f"{info}/INSTALLER"] = b"pip\n"
    for rel, data in all_files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
    record = "".join(f"{rel},{_h(data)},{len(data)}\n" for rel, data in all_files.items()) + f"{info}/RECORD,,\n"
    (site / info / "RECORD").write_text(record)


@pytest.fixture
def site(tmp_path) -> Path:
    site = tmp_path / "site"
    install(site, "swqos-fake", "1.0", {"__init__.py": b"X = 1\n", "mod.py": b"def f():\n    return 2\n"})
    install(site, "swqos-other", "2.0", {"__init__.py": b""})
    install(site, "unrelated", "9.9", {"__init__.py": b""})  # not swqos: ignored
    return site


@pytest.fixture
def signed(site, keys, tmp_path):
    data = create_release_manifest("1.0", path=[str(site)])
    manifest, sig = tmp_path / "release.json", tmp_path / "release.json.sig"
    manifest.write_bytes(data)
    sig.write_bytes(sign_blob(keys.private, data))
    return manifest, sig


def check(signed, keys, site, **kw):
    return check_release(*signed, keys.pub_path, path=[str(site)], **kw)


def test_untouched_installation_passes(signed, keys, site):
    assert check(signed, keys, site, key_id=keys.key_id) == []
    assert records_check(path=[str(site)]) == []


def test_modified_file(signed, keys, site):
    (site / "swqos_fake" / "mod.py").write_bytes(b"def f():\n    return 3\n")
    problems = check(signed, keys, site)
    assert "swqos-fake: swqos_fake/mod.py was modified" in problems
    assert any("does not match its RECORD hash" in p for p in problems)
    assert any("RECORD" in p for p in records_check(path=[str(site)]))


def test_added_and_missing_files(signed, keys, site):
    (site / "swqos_fake" / "evil.py").write_bytes(b"import os\n")
    (site / "swqos_other" / "__init__.py").unlink()
    problems = check(signed, keys, site)
    assert "swqos-fake: swqos_fake/evil.py is not part of the release" in problems
    assert "swqos-other: swqos_other/__init__.py is missing" in problems


def test_version_and_distribution_set(signed, keys, site):
    install(site, "swqos-sneaky-plugin", "0.1", {"__init__.py": b""})
    problems = check(signed, keys, site)
    assert "swqos-sneaky-plugin: installed but not part of the release" in problems
    meta = next(site.glob("swqos_other-2.0.dist-info")) / "METADATA"
    meta.write_text(meta.read_text().replace("Version: 2.0", "Version: 2.1"))
    assert any("installed version 2.1" in p for p in check(signed, keys, site))


def test_signature_problems(signed, keys, other_keys, site):
    manifest, sig = signed
    assert "signature refused" in check_release(manifest, sig, other_keys.pub_path, path=[str(site)])[0]
    assert "key id" in check_release(manifest, sig, keys.pub_path, key_id="0" * 64, path=[str(site)])[0]
    manifest.write_bytes(manifest.read_bytes().replace(b"swqos_fake/mod.py", b"swqos_fake/mud.py"))
    assert "signature refused" in check(signed, keys, site)[0]
    assert "unusable" in check_release(manifest.with_name("nope.json"), sig, keys.pub_path)[0]


def test_wrong_document_type_is_refused(keys, tmp_path, site):
    data = b'{"_type": "swqos/revocation-manifest/v1"}'
    (tmp_path / "m.json").write_bytes(data)
    (tmp_path / "m.sig").write_bytes(sign_blob(keys.private, data))
    problems = check_release(tmp_path / "m.json", tmp_path / "m.sig", keys.pub_path, path=[str(site)])
    assert problems and "unusable" in problems[0]


def test_enforce_raises_config_error(signed, keys, site, monkeypatch):
    import swqos_killswitch.release as rel

    monkeypatch.setattr(rel, "swqos_distributions", lambda path=None, _orig=rel.swqos_distributions: _orig([str(site)]))
    enforce_release(*signed, keys.pub_path)
    (site / "swqos_fake" / "mod.py").write_bytes(b"tampered\n")
    with pytest.raises(ConfigError, match="refusing to serve"):
        enforce_release(*signed, keys.pub_path)


def test_cli_records_only_on_the_real_environment(capsys):
    parser = argparse.ArgumentParser(prog="swqos")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["verify-release", "--records-only"])
    assert args.func(args) == 0
    assert "swqos-core" in capsys.readouterr().out
    args = parser.parse_args(["verify-release"])
    assert args.func(args) == 2
