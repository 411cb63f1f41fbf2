"""Fixtures of the kms_nitro tests: the real vectors and a sealed key. The fake NSM and the fake
KMS (``fake_nsm_pki``, ``fake_nsm_dir``, ``fake_nsm``, ``fake_kms``) come from the swqos test kit."""

from __future__ import annotations

from pathlib import Path

import pytest

from swqos_kms_nitro.fake_kms import FakeKms

from .kmsnitro_helpers import TESTDATA, Sealed


@pytest.fixture(scope="session")
def real_doc() -> bytes:
    return (TESTDATA / "nitro-attestation-eu-west-1.cbor").read_bytes()


@pytest.fixture(scope="session")
def real_envelopes() -> list[bytes]:
    names = ("kms-ciphertext-for-recipient.ber", "kms-ciphertext-for-recipient-2.ber")
    return [(TESTDATA / n).read_bytes() for n in names]


@pytest.fixture
def sealed(fake_kms: FakeKms, tmp_path: Path, fake_nsm_dir: Path) -> Sealed:
    return Sealed(fake_kms, tmp_path, fake_nsm_dir)
