"""Through the real enclave process and gRPC proxy: an enclave that unseals via the fakes signs and
attests; an enclave whose unsealing fails exits non-zero and never serves."""

from __future__ import annotations

import grpc
import pytest
from nacl.signing import VerifyKey

from swqos_core.errors import ConfigError
from swqos_core.identity import read_keypair_file, to_base58
from swqos_dev import devstack
from swqos_kms_nitro import attestation
from swqos_kms_nitro.cli import seal_seed
from swqos_kms_nitro.fake_nsm import default_pcrs
from swqos_testing.configs import merge
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack

from .kmsnitro_helpers import approved_policy, kms_client


def _enclave_override(tmp_path, fake_kms, key_arn, validator, fake_nsm_dir, **extra):
    settings = {
        "expected_public_key": validator, "key_id": key_arn, "region": fake_kms.region,
        "ciphertext_file": str(tmp_path / "identity.sealed"), "endpoint_url": fake_kms.endpoint_url,
        "fake_pki_dir": str(fake_nsm_dir), "max_attempts": 1, **extra,
    }
    return {
        "swqos": {"plugins": ["payload_tls_cv", "kms_nitro"], "allow_test_plugins": True},
        "pipeline": {"key_provider": "nitro_fake"},
        "layers": {"key_provider": {"file": None, "nitro_fake": settings}},
    }


@pytest.mark.slow
async def test_enclave_boots_through_fake_kms_signs_and_attests(tmp_path, fake_kms, fake_nsm_dir):
    async with running_stack(tmp_path, start_enclave=False, wait_serving=False) as stack:
        seed = read_keypair_file(stack.dev.identity)
        validator = stack.dev.identity_b58()
        key = fake_kms.create_key(approved_policy(validator))
        blob, arn = seal_seed(kms_client(fake_kms), key.arn, seed, {"validator": validator})
        (tmp_path / "identity.sealed").write_bytes(blob)
        stack.dev.identity.unlink()  # the key now exists only sealed in KMS
        devstack.write_toml(stack.enclave_config, merge(devstack.enclave_config(stack.dev),
                                                        _enclave_override(tmp_path, fake_kms, arn, validator, fake_nsm_dir)))
        await stack.start_enclave()
        await stack.wait_serving()
        payload = valid_cv()
        r = await stack.sign(payload)
        assert r.code == grpc.StatusCode.OK, r.details
        VerifyKey(stack.identity_key).verify(payload, r.response.signature)
        r = await stack.identity(nonce=b"trader-nonce-1")
        assert r.code == grpc.StatusCode.OK, r.details
        doc = attestation.verify_identity(r.response.attestation_document, stack.identity_key, b"trader-nonce-1",
                                          root=fake_kms.root, expected_pcrs={0: default_pcrs()[0]})
        assert to_base58(doc.public_key) == validator
        assert any(op == "Decrypt" for op, _ in fake_kms.calls)


@pytest.mark.slow
async def test_enclave_exits_nonzero_when_unsealing_fails(tmp_path, fake_kms, fake_nsm_dir):
    async with running_stack(tmp_path, start_enclave=False, wait_serving=False) as stack:
        seed = read_keypair_file(stack.dev.identity)
        validator = stack.dev.identity_b58()
        other = {i: bytes([7]) * 48 for i in range(3)}  # the policy approves another image
        key = fake_kms.create_key(approved_policy(validator, pcrs=other))
        blob, arn = seal_seed(kms_client(fake_kms), key.arn, seed, {"validator": validator})
        (tmp_path / "identity.sealed").write_bytes(blob)
        devstack.write_toml(stack.enclave_config, merge(devstack.enclave_config(stack.dev),
                                                        _enclave_override(tmp_path, fake_kms, arn, validator, fake_nsm_dir)))
        with pytest.raises(ConfigError, match="exited with code 1"):
            await stack.start_enclave()
        log = (stack.dev_dir / "enclave.log").read_text()
        assert "AccessDeniedException" in log
        assert stack.enclave_process.returncode == 1
        r = await stack.sign(valid_cv())
        assert r.code == grpc.StatusCode.UNAVAILABLE
