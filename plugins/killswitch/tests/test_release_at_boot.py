"""The ``release_check`` service: the host-proxy refuses to start (nothing binds) when its installed
files do not match the signed release manifest, and starts when they do."""

import json

import pytest

from swqos_core import __version__, config
from swqos_core.errors import ConfigError
from swqos_core.plugins import build_app
from swqos_killswitch.release import create_release_manifest
from swqos_killswitch.release_check import ReleaseCheck
from swqos_killswitch.signing import generate_private_key, key_id, public_key_pem, sign_blob
from swqos_testing.stack import running_stack


def release_config(paths: dict, kid: str, **over) -> dict:
    settings = {"manifest": str(paths["release.json"]), "signature": str(paths["release.sig"]),
                "public_key": str(paths["release.pub"]), "key_id": kid, **over}
    return {"swqos": {"plugins": ["auth_jwt", "killswitch"]},
            "pipeline": {"services": ["release_check"]},
            "layers": {"service": {"release_check": {k: v for k, v in settings.items() if v is not None}}}}


@pytest.fixture
def release_files(tmp_path):
    key = generate_private_key()
    kid = key_id(key.public_key())
    manifest = create_release_manifest(__version__)
    paths = {name: tmp_path / name for name in ("release.json", "release.sig", "release.pub")}
    paths["release.pub"].write_bytes(public_key_pem(key.public_key()))

    def write(data: bytes, **over) -> dict:
        paths["release.json"].write_bytes(data)
        paths["release.sig"].write_bytes(sign_blob(key, data))
        return release_config(paths, kid, **over)

    return manifest, write


async def test_matching_release_starts(tmp_path, release_files):
    manifest, write = release_files
    async with running_stack(tmp_path, proxy=write(manifest)) as stack:
        assert stack.state.serving
        check = next(obj for _, obj in stack.proxy.app.layers["service"] if isinstance(obj, ReleaseCheck))
        assert check.problems == []
        owner, report = stack.proxy.app.contributions.status["release_check"]
        assert owner == "killswitch" and report()["passed"] is True


async def test_tampered_file_list_refuses_to_start(tmp_path, release_files):
    manifest, write = release_files
    doc = json.loads(manifest)
    # Pretend the release shipped different bytes for one of our files.
    files = doc["distributions"][0]["files"]
    files[next(iter(files))] = "sha256=" + "A" * 43
    with pytest.raises(ConfigError, match="release integrity check failed") as exc:
        async with running_stack(tmp_path, proxy=write(json.dumps(doc).encode())):
            pass
    assert "was modified" in str(exc.value)


async def test_wrong_key_id_refuses_to_start(tmp_path, release_files):
    manifest, write = release_files
    with pytest.raises(ConfigError, match="release integrity check failed") as exc:
        async with running_stack(tmp_path, proxy=write(manifest, key_id="0" * 64)):
            pass
    assert "key id" in str(exc.value)


def _build(tmp_path, data: dict):
    raw = {"proxy": {"tls_cert": "c", "tls_key": "k", "enclave": "unix:///x"}, **data}
    raw["pipeline"] = {"auth": [], **raw["pipeline"]}
    return build_app(config.parse(raw, path=tmp_path / "p.toml", process="proxy"))


@pytest.mark.parametrize("missing", ["manifest", "signature", "public_key", "key_id"])
def test_release_settings_are_all_required(tmp_path, release_files, missing):
    manifest, write = release_files
    cfg = write(manifest, **{missing: None})
    with pytest.raises(ConfigError, match=missing):
        _build(tmp_path, cfg)


def test_malformed_key_id_is_a_config_error(tmp_path, release_files):
    manifest, write = release_files
    with pytest.raises(ConfigError, match="key_id must be 64 hex digits"):
        _build(tmp_path, write(manifest, key_id="abc"))


def test_release_check_needs_the_plugin(tmp_path, release_files):
    manifest, write = release_files
    cfg = write(manifest)
    cfg["swqos"]["plugins"] = ["auth_jwt"]
    with pytest.raises(ConfigError, match="release_check"):
        _build(tmp_path, cfg)
