"""`[proxy] verify_release_*`: the host-proxy refuses to start when its installed files do not
match the signed release manifest, and starts when they do."""

import json

import pytest

from swqos_core import __version__
from swqos_core.errors import ConfigError
from swqos_core.killswitch.signing import generate_private_key, public_key_pem, sign_blob
from swqos_core.release import create_release_manifest
from swqos_testing.stack import running_stack


@pytest.fixture
def release_files(tmp_path):
    key = generate_private_key()
    manifest = create_release_manifest(__version__)
    paths = {name: tmp_path / name for name in ("release.json", "release.sig", "release.pub")}
    paths["release.pub"].write_bytes(public_key_pem(key.public_key()))

    def write(data: bytes) -> dict:
        paths["release.json"].write_bytes(data)
        paths["release.sig"].write_bytes(sign_blob(key, data))
        return {"proxy": {"verify_release_manifest": str(paths["release.json"]),
                          "verify_release_signature": str(paths["release.sig"]),
                          "verify_release_public_key": str(paths["release.pub"])}}

    return manifest, write


async def test_matching_release_starts(tmp_path, release_files):
    manifest, write = release_files
    async with running_stack(tmp_path, proxy=write(manifest)) as stack:
        assert stack.state.serving


async def test_tampered_file_list_refuses_to_start(tmp_path, release_files):
    manifest, write = release_files
    doc = json.loads(manifest)
    # Pretend the release shipped different bytes for one of our files.
    files = doc["distributions"][0]["files"]
    files[next(iter(files))] = "sha256=" + "A" * 43
    with pytest.raises(ConfigError, match="release integrity check failed"):
        async with running_stack(tmp_path, proxy=write(json.dumps(doc).encode())):
            pass


def test_release_settings_go_together(tmp_path):
    from swqos_core import config

    with pytest.raises(ConfigError, match="go together"):
        config.parse({"proxy": {"tls_cert": "c", "tls_key": "k", "enclave": "unix:///x",
                                "verify_release_manifest": "m.json"}, "pipeline": {"auth": []}},
                     path=tmp_path / "p.toml")
