"""CiphertextForRecipient: the real KMS vectors, re-encoded variants, and the builder's round trip."""

from __future__ import annotations

import pytest
from asn1crypto import algos, x509
from asn1crypto import cms as asn1_cms
from cryptography.hazmat.primitives.asymmetric import rsa

from swqos_kms_nitro import cms


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_both_real_vectors_parse(real_envelopes):
    first, second = (cms.parse_envelope(b) for b in real_envelopes)
    assert len(first.ciphertext) == 48 and len(second.ciphertext) == 16
    assert first.iv.hex() == "688c6d5f7f31b0fecedf09f2e7c99ac9"
    assert second.iv.hex() == "e66c1172aee0f2f7be34e3afc6b0e4fe"
    assert len(first.recipient_ski) == 32 and len(first.encrypted_key) == 256
    # Both are BER with indefinite lengths, as KMS sends them.
    assert all(b[:2] == b"\x30\x80" for b in real_envelopes)


def test_real_vector_cannot_be_opened_with_another_key(real_envelopes, rsa_key):
    with pytest.raises(cms.EnvelopeError, match="decryption failed"):
        cms.open_envelope(real_envelopes[0], rsa_key)


def _reencode(blob: bytes, change) -> bytes:
    ci = asn1_cms.ContentInfo.load(blob)
    change(ci["content"])
    return ci.dump(force=True)


def test_reencoding_without_change_still_parses(real_envelopes):
    # Control for the tests below: asn1crypto's DER re-encoding alone is accepted.
    for blob in real_envelopes:
        assert cms.parse_envelope(_reencode(blob, lambda ed: None)) == cms.parse_envelope(blob)


def _pkcs1(ed):
    ed["recipient_infos"][0].chosen["key_encryption_algorithm"] = {"algorithm": "rsaes_pkcs1v15"}


def _two_recipients(ed):
    first = ed["recipient_infos"][0]
    ed["recipient_infos"] = [first, asn1_cms.RecipientInfo.load(first.dump())]


def _aes128(ed):
    alg = ed["encrypted_content_info"]["content_encryption_algorithm"]
    ed["encrypted_content_info"]["content_encryption_algorithm"] = {
        "algorithm": "aes128_cbc", "parameters": alg["parameters"].native}


def _sha1_oaep(ed):
    # RSAES-OAEP with SHA-1 and MGF1-SHA-1 written out (the absent-parameters case is in the builder tests).
    ed["recipient_infos"][0].chosen["key_encryption_algorithm"] = {
        "algorithm": "rsaes_oaep", "parameters": algos.RSAESOAEPParams({
            "hash_algorithm": {"algorithm": "sha1"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha1"}},
        })}


def _issuer_serial(ed):
    ri = ed["recipient_infos"][0].chosen
    ri["rid"] = asn1_cms.RecipientIdentifier(name="issuer_and_serial_number", value={
        "issuer": x509.Name.build({"common_name": "x"}), "serial_number": 1})


def _version0(ed):
    ed["version"] = "v0"


@pytest.mark.parametrize(("change", "reason"), [
    (_pkcs1, "rsaes_pkcs1v15, expected rsaes_oaep"),
    (_two_recipients, "2 recipients"),
    (_aes128, "aes128_cbc, expected aes256_cbc"),
    (_sha1_oaep, "SHA-1 defaults"),  # DER drops default-valued fields: SHA-1 params encode as empty,
    (_issuer_serial, "subjectKeyIdentifier|version"),
    (_version0, "version is not 2"),
])
def test_real_vectors_reencoded_wrongly_are_refused(real_envelopes, change, reason):
    for blob in real_envelopes:
        with pytest.raises(cms.EnvelopeError, match=reason):
            cms.parse_envelope(_reencode(blob, change))


def test_trailing_garbage_refused(real_envelopes):
    with pytest.raises(cms.EnvelopeError, match="trailing bytes"):
        cms.parse_envelope(real_envelopes[0] + b"\x00")


@pytest.mark.parametrize("blob", [b"", b"\x30\x80", b"\x04\x01A", b"\x30" * 7000])
def test_garbage_refused(blob):
    with pytest.raises(cms.EnvelopeError):
        cms.parse_envelope(blob)


def test_builder_matches_the_kms_layout(real_envelopes, rsa_key):
    built = cms.build_envelope(b"\x01" * 32, rsa_key.public_key())
    # Same BER skeleton as KMS up to the SKI value (offset 28 + 2 = 30 bytes of header).
    assert built[:30] == real_envelopes[0][:30]
    env = cms.parse_envelope(built)
    assert len(env.ciphertext) == 48  # 32 bytes + a full block of PKCS#7 padding, like the first real vector


@pytest.mark.parametrize("chunk", [None, 16, 1024])
def test_round_trip(rsa_key, chunk):
    assert cms.open_envelope(cms.build_envelope(b"seed" * 8, rsa_key.public_key(), chunk=chunk), rsa_key) == b"seed" * 8


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"key_transport": "pkcs1v15"}, "expected rsaes_oaep"),
    ({"key_transport": "oaep_sha1_defaults"}, "SHA-1 defaults"),
    ({"recipients": 2}, "2 recipients"),
    ({"content_cipher": "aes128_cbc"}, "expected aes256_cbc"),
    ({"corrupt_padding": True}, "decryption failed"),
    ({"version": 0}, "version is not 2"),
])
def test_malformed_envelopes_refused(rsa_key, kwargs, reason):
    blob = cms.build_envelope(b"\x01" * 32, rsa_key.public_key(), **kwargs)
    with pytest.raises(cms.EnvelopeError, match=reason):
        cms.open_envelope(blob, rsa_key)


def test_crypto_failures_share_one_message(rsa_key):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong_key = cms.build_envelope(b"\x01" * 32, other.public_key())
    bad_padding = cms.build_envelope(b"\x01" * 32, rsa_key.public_key(), corrupt_padding=True)
    messages = set()
    for blob in (wrong_key, bad_padding):
        with pytest.raises(cms.EnvelopeError) as info:
            cms.open_envelope(blob, rsa_key)
        messages.add(str(info.value))
    assert messages == {"CiphertextForRecipient refused: decryption failed"}
