"""The verifier against the real AWS document, and the fake NSM's documents against the same verifier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swqos_kms_nitro import attestation as A
from swqos_kms_nitro.fake_nsm import FakeNsm, FakePki

from .kmsnitro_helpers import REAL_DOC_TIMESTAMP_MS, REAL_PCR0

REAL_TIME = datetime.fromtimestamp(REAL_DOC_TIMESTAMP_MS / 1000, UTC)


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def parts(doc: bytes) -> tuple[list, dict]:
    outer = cbor2.loads(doc)
    return outer, cbor2.loads(outer[2])


# --- the real AWS document ------------------------------------------------------------------


def test_real_document_verifies_at_its_own_timestamp(real_doc):
    doc = A.verify(real_doc, at="document")
    assert doc.timestamp_ms == REAL_DOC_TIMESTAMP_MS
    assert doc.pcr_hex(0) == REAL_PCR0
    assert doc.module_id == "i-01464dfc66ef2a314-enc0198f62377ead51d"
    assert len(doc.pcrs) == 16 and all(len(v) == 48 for v in doc.pcrs.values())
    assert doc.public_key is not None and len(doc.public_key) == 33
    assert doc.user_data is None and doc.nonce is None
    assert A.fingerprint(doc.cabundle[0]) == A.AWS_NITRO_ROOT_SHA256


def test_real_document_verifies_at_explicit_time_inside_leaf_validity(real_doc):
    A.verify(real_doc, at=REAL_TIME + timedelta(hours=1))


def test_real_document_refused_now(real_doc):
    with pytest.raises(A.AttestationError, match="document certificate is not valid at"):
        A.verify(real_doc)


def test_real_document_refused_after_leaf_expiry(real_doc):
    with pytest.raises(A.AttestationError, match="not valid at"):
        A.verify(real_doc, at=REAL_TIME + timedelta(hours=3, minutes=1))


def test_real_document_wrapped_in_tag_18_verifies(real_doc):
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(real_doc)))
    assert tagged[0] == 0xD2
    A.verify(tagged, at="document")


def test_real_document_other_tag_refused(real_doc):
    with pytest.raises(A.AttestationError, match="tag 99"):
        A.verify(cbor2.dumps(cbor2.CBORTag(99, cbor2.loads(real_doc))), at="document")


def test_real_document_expected_values(real_doc):
    _, payload = parts(real_doc)
    A.verify(real_doc, at="document", expected_pcrs={0: bytes.fromhex(REAL_PCR0)},
             public_key=payload["public_key"])
    # A list allows several values (an upgrade); one of them matching is enough.
    A.verify(real_doc, at="document", expected_pcrs={0: [bytes(48), bytes.fromhex(REAL_PCR0)]})
    with pytest.raises(A.AttestationError, match="PCR0 does not match"):
        A.verify(real_doc, at="document", expected_pcrs={0: b"\x11" * 48})
    with pytest.raises(A.AttestationError, match="PCR20 is not in the document"):
        A.verify(real_doc, at="document", expected_pcrs={20: b"\x11" * 48})
    with pytest.raises(A.AttestationError, match="nonce does not match"):
        A.verify(real_doc, at="document", nonce=b"fresh")
    with pytest.raises(A.AttestationError, match="public_key does not match"):
        A.verify(real_doc, at="document", public_key=b"\x02" * 33)


def test_real_document_freshness(real_doc):
    A.verify(real_doc, at=REAL_TIME + timedelta(minutes=5), max_age=600)
    with pytest.raises(A.AttestationError, match="older than 60 s"):
        A.verify(real_doc, at=REAL_TIME + timedelta(minutes=5), max_age=60)
    with pytest.raises(A.AttestationError, match="in the future"):
        A.verify(real_doc, at=REAL_TIME - timedelta(seconds=2), max_age=60, future_skew=0.5)
    A.verify(real_doc, at=REAL_TIME - timedelta(seconds=2), max_age=60)  # within the default 300 s skew


def test_one_changed_byte_in_payload_refused(real_doc):
    i = real_doc.find(b"i-01464dfc66ef2a314")  # inside module_id, in the signed payload
    with pytest.raises(A.AttestationError, match="COSE signature does not verify"):
        A.verify(flip(real_doc, i + 3), at="document")


def test_one_changed_byte_in_signature_refused(real_doc):
    with pytest.raises(A.AttestationError, match="COSE signature does not verify"):
        A.verify(flip(real_doc, len(real_doc) - 10), at="document")


def test_one_changed_byte_in_a_pcr_refused(real_doc):
    i = real_doc.find(bytes.fromhex(REAL_PCR0))
    assert i > 0
    with pytest.raises(A.AttestationError, match="COSE signature does not verify"):
        A.verify(flip(real_doc, i + 20), at="document")


@pytest.mark.parametrize("which", ["certificate", 0, 1, 2, 3])
def test_one_changed_byte_in_a_chain_certificate_refused(real_doc, which):
    _, payload = parts(real_doc)
    der = payload["certificate"] if which == "certificate" else payload["cabundle"][which]
    i = real_doc.find(der)
    assert i > 0
    # Change a byte of the certificate's signature (near its end): still parses, no longer verifies.
    with pytest.raises(A.AttestationError):
        A.verify(flip(real_doc, i + len(der) - 5), at="document")


def test_trailing_bytes_refused(real_doc):
    with pytest.raises(A.AttestationError, match="trailing bytes"):
        A.verify(real_doc + b"\x00", at="document")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_is_refused(real_doc, index, mask):
    with pytest.raises(A.AttestationError):
        A.verify(flip(real_doc, index % len(real_doc), mask), at="document")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=1, max_value=4493))
def test_truncated_document_refused(real_doc, cut):
    with pytest.raises(A.AttestationError):
        A.verify(real_doc[:cut], at="document")


def test_root_is_pinned_not_taken_from_cabundle(real_doc, fake_nsm_pki):
    # Trusting the fake root for the real document fails: cabundle[0] is not that root.
    with pytest.raises(A.AttestationError, match=r"cabundle\[0\] is not the pinned root"):
        A.verify(real_doc, at="document", root=fake_nsm_pki.root_cert)


def test_load_root_checks_fingerprint():
    colon_form = "64:1A:03:21:A3:E2:44:EF:E4:56:46:31:95:D6:06:31:7E:D7:CD:CC:3C:17:56:E0:98:93:F3:C6:8F:79:BB:5B"
    A.load_root(A.AWS_NITRO_ROOT_PEM, colon_form)
    with pytest.raises(A.AttestationError, match="pinned SHA-256 fingerprint"):
        A.load_root(A.AWS_NITRO_ROOT_PEM, "00" * 32)


def test_unprotected_header_and_other_alg_refused(real_doc):
    outer = cbor2.loads(real_doc)
    with pytest.raises(A.AttestationError, match="unprotected header is not empty"):
        A.verify(cbor2.dumps([outer[0], {4: b"kid"}, outer[2], outer[3]]), at="document")
    with pytest.raises(A.AttestationError, match="exactly \\{alg: ES384\\}"):
        A.verify(cbor2.dumps([cbor2.dumps({1: -7}), {}, outer[2], outer[3]]), at="document")
    with pytest.raises(A.AttestationError, match="expected 96"):
        A.verify(cbor2.dumps([outer[0], {}, outer[2], outer[3][:64]]), at="document")


# --- documents from the fake NSM ------------------------------------------------------------


def test_fake_document_has_the_real_shape(real_doc, fake_nsm_pki):
    nsm = FakeNsm(fake_nsm_pki)
    doc = nsm.document(public_key=b"\x05" * 294)
    # Untagged COSE_Sign1, protected {1: -35}, empty unprotected map, payload bstr with a 2-byte length.
    assert doc[:8] == real_doc[:8] == bytes.fromhex("8444a1013822a059")
    outer, payload = parts(doc)
    real_outer, real_payload = parts(real_doc)
    assert outer[2][:1] == b"\xbf" and outer[2][-1:] == b"\xff"  # indefinite-length map, like the NSM
    assert real_outer[2][:1] == b"\xbf"
    assert list(payload) == list(real_payload) == list(A.PAYLOAD_KEYS)
    assert payload["user_data"] is None and payload["nonce"] is None
    assert sorted(payload["pcrs"]) == sorted(real_payload["pcrs"]) == list(range(16))
    assert all(len(v) == 48 for v in payload["pcrs"].values())
    assert len(outer[3]) == 96
    assert len(payload["cabundle"]) == len(real_payload["cabundle"]) == 4
    assert payload["digest"] == "SHA384"


def test_fake_document_passes_the_same_verifier_with_the_test_root(fake_nsm_pki):
    nsm = FakeNsm(fake_nsm_pki)
    doc = A.verify(nsm.document(nonce=b"n1", public_key=b"k" * 32), root=fake_nsm_pki.root_cert, max_age=60,
                   nonce=b"n1", public_key=b"k" * 32)
    assert doc.pcrs == nsm.pcrs


def test_fake_document_refused_against_the_aws_root(fake_nsm_pki):
    with pytest.raises(A.AttestationError, match="pinned root"):
        A.verify(FakeNsm(fake_nsm_pki).document())


def test_fake_document_signed_by_an_unknown_chain_refused(fake_nsm_pki):
    other = FakePki.generate()
    doc = FakeNsm(other).document()
    with pytest.raises(A.AttestationError, match="pinned root"):
        A.verify(doc, root=fake_nsm_pki.root_cert)


def test_debug_variant_refused(fake_nsm_pki):
    doc = FakeNsm(fake_nsm_pki, variant="debug").document()
    with pytest.raises(A.AttestationError, match="debug mode"):
        A.verify(doc, root=fake_nsm_pki.root_cert)
    assert A.verify(doc, root=fake_nsm_pki.root_cert, allow_debug=True).debug_mode


def test_expired_leaf_variant_refused_now_but_valid_at_its_time(fake_nsm_pki):
    nsm = FakeNsm(fake_nsm_pki, variant="expired")
    doc = nsm.document()
    with pytest.raises(A.AttestationError, match="document certificate is not valid at"):
        A.verify(doc, root=fake_nsm_pki.root_cert)
    A.verify(doc, root=fake_nsm_pki.root_cert, at="document")


def test_stale_fake_document_refused_by_max_age(fake_nsm_pki):
    nsm = FakeNsm(fake_nsm_pki)
    old = int((datetime.now(UTC) - timedelta(minutes=10)).timestamp() * 1000)
    with pytest.raises(A.AttestationError, match="older than 300 s"):
        A.verify(nsm.document(timestamp_ms=old), root=fake_nsm_pki.root_cert, max_age=300)


def test_identity_document_binding(fake_nsm_pki):
    nsm = FakeNsm(fake_nsm_pki)
    identity = b"\x07" * 32
    doc = nsm.document(public_key=identity, nonce=b"abc", user_data=A.IDENTITY_USER_DATA)
    A.verify_identity(doc, identity, b"abc", root=fake_nsm_pki.root_cert)
    with pytest.raises(A.AttestationError, match="nonce"):
        A.verify_identity(doc, identity, b"abd", root=fake_nsm_pki.root_cert)
    with pytest.raises(A.AttestationError, match="public_key"):
        A.verify_identity(doc, b"\x08" * 32, b"abc", root=fake_nsm_pki.root_cert)
    with pytest.raises(A.AttestationError, match="nonce is required"):
        A.verify_identity(doc, identity, b"", root=fake_nsm_pki.root_cert)
    unlabelled = nsm.document(public_key=identity, nonce=b"abc")
    with pytest.raises(A.AttestationError, match="user_data"):
        A.verify_identity(unlabelled, identity, b"abc", root=fake_nsm_pki.root_cert)


def test_leaf_that_is_a_ca_refused(fake_nsm_pki, monkeypatch):
    # The instance CA signing a document directly (cabundle shortened) breaks the leaf profile.
    nsm = FakeNsm(fake_nsm_pki)
    nsm.certificate = nsm.cabundle[-1]
    with pytest.raises(A.AttestationError):
        A.verify(nsm.document(), root=fake_nsm_pki.root_cert)
