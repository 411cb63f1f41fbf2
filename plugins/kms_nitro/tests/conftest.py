"""Fixtures: the real vectors, a fake NSM PKI, a running fake KMS, a sealed key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# --import-mode=importlib does not put test directories on sys.path; the helper module lives here.
sys.path.insert(0, str(Path(__file__).parent))

from kmsnitro_helpers import TESTDATA, Sealed

from swqos_kms_nitro.fake_kms import FakeKms
from swqos_kms_nitro.fake_nsm import FakePki


@pytest.fixture(scope="session")
def real_doc() -> bytes:
    return (TESTDATA / "nitro-attestation-eu-west-1.cbor").read_bytes()


@pytest.fixture(scope="session")
def real_envelopes() -> list[bytes]:
    names = ("kms-ciphertext-for-recipient.ber", "kms-ciphertext-for-recipient-2.ber")
    return [(TESTDATA / n).read_bytes() for n in names]


@pytest.fixture(scope="session")
def pki() -> FakePki:
    return FakePki.generate()


@pytest.fixture
def pki_dir(tmp_path: Path, pki: FakePki) -> Path:
    d = tmp_path / "fake-nsm"
    pki.save(d)
    return d


@pytest.fixture
def kms(pki: FakePki):
    with FakeKms(pki.root_cert) as server:
        yield server


@pytest.fixture
def sealed(kms: FakeKms, tmp_path: Path, pki_dir: Path) -> Sealed:
    return Sealed(kms, tmp_path, pki_dir)
