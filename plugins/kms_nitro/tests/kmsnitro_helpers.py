"""Helpers for the kms_nitro tests: paths to the real vectors, the sealed-key builder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import boto3

from swqos_core.identity import to_base58
from swqos_core.layers import BuildContext
from swqos_kms_nitro import policy
from swqos_kms_nitro.cli import public_of, seal_seed
from swqos_kms_nitro.fake_kms import FakeKms
from swqos_kms_nitro.fake_nsm import default_pcrs
from swqos_kms_nitro.provider import NitroFakeKeySettings, NitroKeyProvider, make_nitro_fake

TESTDATA = Path("/work/shared/testdata")
for _up in Path(__file__).resolve().parents:
    if (_up / "shared" / "testdata").is_dir():
        TESTDATA = _up / "shared" / "testdata"
        break
REAL_DOC_TIMESTAMP_MS = 1757440781958
REAL_PCR0 = "94b74422daddb8f503fcd69df064c7cde5d053001b9cd153c75ec34484283496a37e89c7287a00f467759a6863362b60"
ROLE = "arn:aws:iam::111122223333:role/swqos-enclave"


def kms_client(kms: FakeKms) -> Any:
    return boto3.client("kms", region_name=kms.region, endpoint_url=kms.endpoint_url,
                        aws_access_key_id="AKIDTEST", aws_secret_access_key="test")


def approved_policy(validator: str | None = None, pcrs: dict[int, bytes] | None = None) -> dict[str, Any]:
    pcrs = pcrs or default_pcrs()
    return policy.build_key_policy(role_arn=ROLE, pcrs={i: [pcrs[i].hex()] for i in (0, 1, 2)}, validator=validator)


def build_ctx() -> BuildContext:
    return BuildContext(name="nitro_fake", kind="key_provider", process="enclave", config_dir=Path("."),
                        logger=logging.getLogger("test.kms_nitro"))


class Sealed:
    """A validator key sealed in the fake KMS, and the settings to unseal it."""

    def __init__(self, kms: FakeKms, tmp_path: Path, pki_dir: Path, *, key_policy: dict[str, Any] | None = None,
                 context: dict[str, str] | None = None) -> None:
        self.seed = bytes(range(1, 33))
        self.public_key = public_of(self.seed)
        self.validator = to_base58(self.public_key)
        self.key = kms.create_key(key_policy or approved_policy(self.validator))
        ctx = {"validator": self.validator, **(context or {})}
        blob, _ = seal_seed(kms_client(kms), self.key.arn, self.seed, ctx)
        self.ciphertext_file = tmp_path / "identity.sealed"
        self.ciphertext_file.write_bytes(blob)
        self.kms = kms
        self.pki_dir = pki_dir

    def settings(self, **overrides: Any) -> NitroFakeKeySettings:
        values: dict[str, Any] = dict(
            expected_public_key=self.validator, key_id=self.key.arn, region=self.kms.region,
            ciphertext_file=self.ciphertext_file, endpoint_url=self.kms.endpoint_url,
            fake_pki_dir=self.pki_dir, max_attempts=1, connect_timeout=2.0, read_timeout=5.0,
        )
        values.update(overrides)
        return NitroFakeKeySettings(**values)

    def provider(self, **overrides: Any) -> NitroKeyProvider:
        return make_nitro_fake(self.settings(**overrides), build_ctx())
