"""The kit as a pytest plugin: its fixtures, and the grpc import-order rule it enforces."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import grpc
import pytest

from swqos_core.errors import ConfigError
from swqos_core.layers import RequestValidator
from swqos_testing.clock import FakeClock
from swqos_testing.payloads import valid_cv

GRPC_FIRST = textwrap.dedent('''
    import grpc  # before anything of swqos: the kit's pytest plugin must already have run

    import asyncio

    from swqos_testing.stack import running_stack


    def test_a_stack_serves_tls13_only(tmp_path):
        async def run():
            async with running_stack(tmp_path) as stack:
                return stack.state.serving

        assert asyncio.run(run()) is True
''')


@pytest.mark.slow
@pytest.mark.parametrize("plugin_enabled", [True, False])
def test_a_test_module_that_imports_grpc_first_works_because_of_the_plugin(tmp_path, plugin_enabled):
    (tmp_path / "test_grpc_first.py").write_text(GRPC_FIRST)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)]
    if not plugin_enabled:
        args[4:4] = ["-p", "no:swqos_testing"]
    env = {k: v for k, v in os.environ.items() if k != "GRPC_SSL_CIPHER_SUITES"}  # as a fresh shell has it
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    if plugin_enabled:
        assert result.returncode == 0, result.stdout + result.stderr
    else:  # the control: without the plugin grpc keeps TLS 1.2 and the proxy refuses to serve
        assert result.returncode == 1, result.stdout + result.stderr
        assert "TLS 1.2" in result.stdout


async def test_swqos_stack_signs_with_the_dev_issuer(swqos_stack):
    before = await swqos_stack.signatures_made()
    result = await swqos_stack.sign(valid_cv())
    assert result.code == grpc.StatusCode.OK, result.details
    assert await swqos_stack.signatures_made() == before + 1


async def test_swqos_stack_factory_starts_stacks_with_overrides(swqos_stack_factory):
    stack = await swqos_stack_factory(proxy={"layers": {"validate": {"limits": {"max_payload_bytes": 100}}}})
    result = await stack.sign(valid_cv())
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT
    other = await swqos_stack_factory()
    assert other.dev_dir != stack.dev_dir
    assert (await other.sign(valid_cv())).code == grpc.StatusCode.OK


def test_swqos_layer_builds_one_layer_as_startup_does(swqos_layer):
    validator = swqos_layer("validate", "limits", {})
    assert isinstance(validator, RequestValidator)
    with pytest.raises(ConfigError, match="unknown implementation 'nope'"):
        swqos_layer("validate", "nope")
    with pytest.raises(ConfigError, match=r"\[layers.validate.limits\]: unknown key 'typo'"):
        swqos_layer("validate", "limits", {"typo": 1})
    with pytest.raises(ConfigError, match="is a test implementation"):
        swqos_layer("auth", "static", {"tokens": {}}, plugins_to_load=["testing"])
    assert swqos_layer("auth", "static", {"tokens": {}}, plugins_to_load=["testing"], allow_test_plugins=True)


def test_swqos_config_builds_writes_and_loads(swqos_config, tmp_path):
    builder = (swqos_config("enclave")
               .merge({"enclave": {"listen": f"unix://{tmp_path}/e.sock", "expected_public_key": "1" * 32}})
               .plugins("payload_tls_cv")
               .layer("payload_match", "tls_cv")
               .layer("key_provider", "file", {"path": "identity.json"}))
    cfg = builder.load()
    assert cfg.process == "enclave" and cfg.core.plugins == ["payload_tls_cv"]
    assert (tmp_path / "enclave.toml").is_file()
    assert cfg.selected()["payload_match"] == ["tls_cv"]
    with pytest.raises(ConfigError):
        swqos_config("proxy").merge({"proxy": {"nope": 1}}).load()


def test_fake_clock_moves_only_when_told(fake_clock):
    start = fake_clock()
    assert fake_clock() == start
    fake_clock.advance(5)
    assert fake_clock() == start + 5
    fake_clock.now = 1.5
    assert FakeClock(1.5)() == fake_clock()


def test_fake_nsm_and_fake_kms_share_the_session_root(fake_nsm, fake_kms, fake_nsm_pki, fake_nsm_dir):
    from swqos_kms_nitro import attestation

    doc = attestation.verify(fake_nsm.document(nonce=b"n"), root=fake_nsm_pki.root_cert, max_age=60)
    assert doc.nonce == b"n"
    assert fake_kms.root == fake_nsm_pki.root_cert
    assert (fake_nsm_dir / "fake-nsm-root.key").stat().st_mode & 0o777 == 0o600
