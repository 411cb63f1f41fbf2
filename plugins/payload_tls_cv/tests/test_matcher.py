"""The matcher accepts exactly the client CertificateVerify shapes, and nothing else."""

import grpc
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from swqos_core.errors import Rejection
from swqos_payload_tls_cv import CLIENT_PREFIX, SERVER_PREFIX, TlsCvMatcher, TlsCvSettings


def cv(hash_len: int, prefix: bytes = CLIENT_PREFIX, fill: int = 0xAB) -> bytes:
    return prefix + bytes([fill]) * hash_len


def refusal(matcher: TlsCvMatcher, payload: bytes) -> Rejection:
    with pytest.raises(Rejection) as info:
        matcher.match(payload)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    return info.value


def test_prefix_is_the_rfc8446_bytes():
    assert CLIENT_PREFIX == b" " * 64 + b"TLS 1.3, client CertificateVerify\x00"
    assert len(CLIENT_PREFIX) == 98


@pytest.mark.parametrize("hash_len", [32, 48])
def test_default_accepts_130_and_146_byte_client_cv(hash_len):
    TlsCvMatcher().match(cv(hash_len))  # no exception


@pytest.mark.parametrize("length", [0, 1, 97, 98, 99, 129, 131, 145, 147, 162, 2048])
def test_default_refuses_every_other_length(length):
    payload = (CLIENT_PREFIX + bytes(2048))[:length]
    assert refusal(TlsCvMatcher(), payload).label == "length"


def test_firedancer_162_byte_variant_is_refused():
    # fd_keyguard's fingerprint admits 162 (a 64-byte hash), but no TLS 1.3 suite produces one.
    assert refusal(TlsCvMatcher(), cv(64)).label == "length"


def test_server_context_refused_by_default_and_named():
    assert refusal(TlsCvMatcher(), cv(32, SERVER_PREFIX)).label == "server_context"


def test_server_context_accepted_when_configured():
    TlsCvMatcher(TlsCvSettings(allow_server_context=True)).match(cv(48, SERVER_PREFIX))


def test_only_130_refuses_146():
    m = TlsCvMatcher(TlsCvSettings(only_130=True))
    m.match(cv(32))
    assert refusal(m, cv(48)).label == "length"


def test_firedancer_event_challenge_is_refused():
    # Starts with 64 spaces too; the exact length and full prefix are what tell them apart.
    payload = b" " * 64 + b"Firedancer event challenge-response" + bytes(317 - 99)
    refusal(TlsCvMatcher(), payload)
    same_len = (b" " * 64 + b"Firedancer event challenge-response" + bytes(64))[:130]
    assert refusal(TlsCvMatcher(), same_len).label == "context"


def test_missing_terminator_is_refused():
    payload = CLIENT_PREFIX[:-1] + b"\x01" + bytes(32)
    assert refusal(TlsCvMatcher(), payload).label == "context"


def test_transaction_shaped_payloads_are_refused():
    legacy_tx = bytes([1]) + bytes(64) + bytes(65)  # one signature + message, 130 bytes
    v0_tx = bytes([0x80]) + bytes(129)
    for payload in (legacy_tx, v0_tx):
        assert refusal(TlsCvMatcher(), payload).label == "prefix"


@pytest.mark.parametrize("position", range(98))
def test_any_single_byte_change_in_the_prefix_is_refused(position):
    payload = bytearray(cv(32))
    payload[position] ^= 0x01
    refusal(TlsCvMatcher(), bytes(payload))


@given(st.sampled_from([32, 48]), st.binary(min_size=48, max_size=48))
def test_every_valid_cv_is_accepted(hash_len, digest):
    TlsCvMatcher().match(CLIENT_PREFIX + digest[:hash_len])


@given(st.binary(max_size=300))
def test_random_bytes_are_never_accepted_unless_a_valid_cv(payload):
    valid = len(payload) in (130, 146) and payload[:98] == CLIENT_PREFIX
    if valid:
        TlsCvMatcher().match(payload)
    else:
        refusal(TlsCvMatcher(), payload)


@given(st.sampled_from([32, 48]), st.data())
def test_mutated_cvs_are_refused_when_the_prefix_or_length_changes(hash_len, data):
    payload = bytearray(cv(hash_len))
    mutation = data.draw(st.sampled_from(["flip", "insert", "delete"]))
    if mutation == "flip":
        i = data.draw(st.integers(0, 97))
        payload[i] ^= data.draw(st.integers(1, 255))
    elif mutation == "insert":
        i = data.draw(st.integers(0, len(payload)))
        payload[i:i] = data.draw(st.binary(min_size=1, max_size=20))
    else:
        i = data.draw(st.integers(0, len(payload) - 1))
        n = data.draw(st.integers(1, 20))
        del payload[i : i + n]
    assume(not (len(payload) in (130, 146) and bytes(payload[:98]) == CLIENT_PREFIX))
    refusal(TlsCvMatcher(), bytes(payload))
