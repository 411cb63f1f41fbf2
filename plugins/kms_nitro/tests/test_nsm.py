"""The NSM client over the fake NSM transport, and the device transport's failure modes."""

from __future__ import annotations

import re

import cbor2
import pytest

from swqos_kms_nitro import nsm as N
from swqos_kms_nitro.fake_nsm import FakeNsm


class Canned:
    """A transport that records requests and answers a fixed CBOR value."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[bytes] = []

    def request(self, data: bytes) -> bytes:
        self.requests.append(data)
        return self.answer if isinstance(self.answer, bytes) else cbor2.dumps(self.answer)


def test_ioctl_code():
    # _IOWR(0x0A, 0, 32 bytes): dir=3 << 30 | size 32 << 16 | type 0x0A << 8 | nr 0
    assert (3 << 30) | (32 << 16) | (0x0A << 8) == N.NSM_IOCTL_REQUEST == 3223325184


def test_attestation_request_is_the_real_cbor_shape():
    t = Canned({"Attestation": {"document": b"doc"}})
    assert N.NsmClient(t).attestation(public_key=b"pk", nonce=b"n") == b"doc"
    assert cbor2.loads(t.requests[0]) == {"Attestation": {"user_data": None, "nonce": b"n", "public_key": b"pk"}}


def test_fake_nsm_through_the_client(fake_nsm_pki):
    fake = FakeNsm(fake_nsm_pki)
    client = N.NsmClient(fake)
    assert len(client.get_random()) == 256
    pcr = client.describe_pcr(0)
    assert pcr.locked and pcr.data == fake.pcrs[0]
    doc = client.attestation(public_key=b"k" * 294)
    assert doc[:6] == bytes.fromhex("8444a1013822")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"public_key": b""}, "public_key is 0 bytes"),
    ({"public_key": b"k" * 1025}, "public_key is 1025 bytes"),
    ({"user_data": b"u" * 513}, "user_data is 513 bytes"),
    ({"nonce": b"n" * 513}, "nonce is 513 bytes"),
])
def test_size_limits_checked_before_sending(kwargs, match):
    t = Canned({"Attestation": {"document": b"doc"}})
    with pytest.raises(N.NsmError, match=match) as info:
        N.NsmClient(t).attestation(**kwargs)
    assert info.value.code == "InvalidArgument" and t.requests == []


def test_fake_nsm_enforces_limits_itself(fake_nsm_pki):
    fake = FakeNsm(fake_nsm_pki)
    raw = cbor2.dumps({"Attestation": {"user_data": b"u" * 600, "nonce": None, "public_key": None}})
    assert cbor2.loads(fake.request(raw)) == {"Error": "InvalidArgument"}
    assert cbor2.loads(fake.request(b"\x00" * 5000)) == {"Error": "InputTooLarge"}
    assert cbor2.loads(fake.request(cbor2.dumps({"DescribePCR": {"index": 40}}))) == {"Error": "InvalidIndex"}


@pytest.mark.parametrize("code", sorted(N.ERROR_MEANINGS))
def test_error_codes_become_clear_exceptions(code):
    with pytest.raises(N.NsmError, match=re.escape(f"NSM {code}: {N.ERROR_MEANINGS[code]}")) as info:
        N.NsmClient(Canned({"Error": code})).get_random()
    assert info.value.code == code


@pytest.mark.parametrize("answer", [
    b"\xff\xff", {"GetRandom": {"random": b""}}, {"Attestation": {}}, "GetRandom", [1, 2],
])
def test_malformed_answers_refused(answer):
    with pytest.raises(N.NsmError, match="InvalidResponse"):
        N.NsmClient(Canned(answer)).get_random()


def test_describe_pcr_index_checked():
    with pytest.raises(N.NsmError, match="InvalidIndex"):
        N.NsmClient(Canned({})).describe_pcr(32)


def test_device_transport_without_device(tmp_path):
    t = N.DeviceTransport(tmp_path / "nsm")
    with pytest.raises(N.NsmError, match="cannot open"):
        N.NsmClient(t).get_random()


def test_device_transport_ioctl_on_a_non_nsm_file(tmp_path):
    # A regular file refuses the ioctl (ENOTTY): the error surfaces as an NsmError, not a crash.
    path = tmp_path / "nsm"
    path.write_bytes(b"")
    t = N.DeviceTransport(path)
    try:
        with pytest.raises(N.NsmError, match="ioctl failed"):
            N.NsmClient(t).get_random()
    finally:
        t.close()
