"""The fake KMS through the real boto3: the KMS behaviours the provider relies on."""

from __future__ import annotations

import base64

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from swqos_kms_nitro import cms
from swqos_kms_nitro.fake_nsm import FakeNsm

from .kmsnitro_helpers import approved_policy, kms_client

OPEN = {"Statement": [{"Effect": "Allow", "Action": "kms:*", "Principal": "*", "Resource": "*"}]}


def _spki(key):
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_encrypt_decrypt_with_open_policy_returns_plaintext(fake_kms):
    key = fake_kms.create_key(OPEN)
    c = kms_client(fake_kms)
    blob = c.encrypt(KeyId=key.key_id, Plaintext=b"secret", EncryptionContext={"a": "1"})["CiphertextBlob"]
    assert c.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "1"})["Plaintext"] == b"secret"
    with pytest.raises(ClientError, match="InvalidCiphertextException"):
        c.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "2"})
    with pytest.raises(ClientError, match="InvalidCiphertextException"):
        c.decrypt(CiphertextBlob=blob)
    with pytest.raises(ClientError, match="InvalidCiphertextException"):
        c.decrypt(CiphertextBlob=blob[:-1] + bytes([blob[-1] ^ 1]), EncryptionContext={"a": "1"})


def test_recipient_gets_an_envelope_and_no_plaintext(fake_kms, fake_nsm_pki):
    key = fake_kms.create_key(approved_policy())
    c = kms_client(fake_kms)
    blob = c.encrypt(KeyId=key.key_id, Plaintext=b"s" * 32)["CiphertextBlob"]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    doc = FakeNsm(fake_nsm_pki).document(public_key=_spki(rsa_key))
    resp = c.decrypt(CiphertextBlob=blob, Recipient={"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                                                      "AttestationDocument": doc})
    assert "Plaintext" not in resp
    assert cms.open_envelope(resp["CiphertextForRecipient"], rsa_key) == b"s" * 32
    rnd = c.generate_random(NumberOfBytes=48, Recipient={"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                                                         "AttestationDocument": doc})
    assert "Plaintext" not in rnd and len(cms.open_envelope(rnd["CiphertextForRecipient"], rsa_key)) == 48


@pytest.mark.parametrize("mutate", ["tamper", "no_public_key", "other_root", "bad_alg"])
def test_bad_recipients_refused(fake_kms, fake_nsm_pki, mutate):
    from swqos_kms_nitro.fake_nsm import FakePki

    key = fake_kms.create_key(OPEN)
    c = kms_client(fake_kms)
    blob = c.encrypt(KeyId=key.key_id, Plaintext=b"s" * 32)["CiphertextBlob"]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nsm = FakeNsm(FakePki.generate() if mutate == "other_root" else fake_nsm_pki)
    doc = nsm.document(public_key=None if mutate == "no_public_key" else _spki(rsa_key))
    if mutate == "tamper":
        doc = doc[:100] + bytes([doc[100] ^ 1]) + doc[101:]
    alg = "RSAES_PKCS1_V1_5" if mutate == "bad_alg" else "RSAES_OAEP_SHA_256"
    with pytest.raises(ClientError) as info:
        c.decrypt(CiphertextBlob=blob, Recipient={"KeyEncryptionAlgorithm": alg, "AttestationDocument": doc})
    assert info.value.response["Error"]["Code"] in ("AccessDeniedException", "ValidationException")


def test_wire_protocol_checks(fake_kms):
    status, body = fake_kms.handle("TrentService.Decrypt", "application/json",
                                   "AWS4-HMAC-SHA256 Credential=x/kms/aws4_request", b"{}")
    assert status == 400 and body["__type"] == "SerializationException"
    status, body = fake_kms.handle("TrentService.Decrypt", "application/x-amz-json-1.1", "", b"{}")
    assert body["__type"] == "MissingAuthenticationTokenException"
    status, body = fake_kms.handle("TrentService.Sign", "application/x-amz-json-1.1",
                              "AWS4-HMAC-SHA256 Credential=x/kms/aws4_request", b"{}")
    assert body["__type"] == "UnknownOperationException"
    status, body = fake_kms.handle("TrentService.Decrypt", "application/x-amz-json-1.1",
                              "AWS4-HMAC-SHA256 Credential=x/kms/aws4_request",
                              b'{"CiphertextBlob": "' + base64.b64encode(b"junk").decode().encode() + b'"}')
    assert body["__type"] == "InvalidCiphertextException"
