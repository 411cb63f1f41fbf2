"""Key policy: what `swqos kms policy` writes, and the subset evaluator the fake KMS uses."""

from __future__ import annotations

import pytest

from swqos_kms_nitro import policy

from .kmsnitro_helpers import ROLE

P0, P1, P2 = "aa" * 48, "bb" * 48, "cc" * 48
NEW_P0 = "dd" * 48


def att(p0=P0, p1=P1, p2=P2):
    return {policy.IMAGE_KEY: p0, f"{policy.ATTESTATION_PREFIX}PCR0": p0,
            f"{policy.ATTESTATION_PREFIX}PCR1": p1, f"{policy.ATTESTATION_PREFIX}PCR2": p2}


@pytest.fixture
def doc():
    return policy.build_key_policy(role_arn=ROLE, pcrs={0: [P0, NEW_P0], 1: [P1], 2: [P2]})


def test_policy_shape(doc):
    allow = next(s for s in doc["Statement"] if s["Sid"] == "EnclaveDecryptWithApprovedImage")
    assert allow["Principal"] == {"AWS": ROLE} and allow["Action"] == "kms:Decrypt"
    cond = allow["Condition"]["StringEqualsIgnoreCase"]
    assert cond["kms:RecipientAttestation:ImageSha384"] == sorted([P0, NEW_P0])
    assert cond["kms:RecipientAttestation:PCR1"] == [P1]
    denies = [s for s in doc["Statement"] if s["Effect"] == "Deny" and s["Action"] == "kms:Decrypt"]
    assert {next(iter(s["Condition"]["StringNotEqualsIgnoreCase"])) for s in denies} == set(cond)
    admin = next(s for s in doc["Statement"] if s["Sid"] == "KeyAdministrationWithoutDecrypt")
    assert admin["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert not any("Decrypt" in a or a in ("kms:*",) for a in admin["Action"])


def test_matching_attestation_allowed(doc):
    assert policy.evaluate(doc, "kms:Decrypt", att())[0]
    assert policy.evaluate(doc, "kms:Decrypt", att(p0=NEW_P0))[0]  # upgrade: new image allowed too
    assert policy.evaluate(doc, "kms:Decrypt", att(p0=P0.upper()))[0]  # IgnoreCase


@pytest.mark.parametrize("context", [
    {},  # no attestation at all (plain Decrypt)
    att(p0="ee" * 48),
    att(p1="ee" * 48),  # image right, kernel wrong
    att(p2="00" * 48),
])
def test_non_matching_attestation_denied(doc, context):
    allowed, why = policy.evaluate(doc, "kms:Decrypt", context)
    assert not allowed and "explicit deny" in why


def test_explicit_deny_beats_a_broad_allow(doc):
    # The trap: an admin statement granting kms:* would let the role Decrypt without Recipient.
    doc["Statement"].append({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:*", "Resource": "*"})
    assert not policy.evaluate(doc, "kms:Decrypt", {})[0]
    assert not policy.evaluate(doc, "kms:ReEncryptFrom", att())[0]
    assert policy.evaluate(doc, "kms:Decrypt", att())[0]


def test_validator_context_condition():
    doc = policy.build_key_policy(role_arn=ROLE, pcrs={0: [P0]}, validator="Val1")
    assert policy.evaluate(doc, "kms:Decrypt", att() | {"kms:EncryptionContext:validator": "Val1"})[0]
    assert not policy.evaluate(doc, "kms:Decrypt", att() | {"kms:EncryptionContext:validator": "Val2"})[0]
    assert not policy.evaluate(doc, "kms:Decrypt", att())[0]


def test_null_and_negated_semantics():
    doc = {"Statement": [
        {"Effect": "Allow", "Action": "kms:Decrypt", "Condition": {"Null": {"kms:X": "true"}}},
        {"Effect": "Deny", "Action": "kms:Decrypt", "Condition": {"StringNotEquals": {"kms:Y": ["a", "b"]}}},
    ]}
    assert not policy.evaluate(doc, "kms:Decrypt", {})[0]  # kms:Y absent → negated true → deny
    assert policy.evaluate(doc, "kms:Decrypt", {"kms:Y": "b"})[0]
    assert not policy.evaluate(doc, "kms:Decrypt", {"kms:Y": "B"})[0]  # case-sensitive
    assert not policy.evaluate(doc, "kms:Decrypt", {"kms:Y": "a", "kms:X": "1"})[0]


@pytest.mark.parametrize("bad", [
    {"Statement": []},
    {"Statement": [{"Effect": "Allow", "Action": "kms:Decrypt",
                    "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}}}]},
    {"Statement": [{"Effect": "Allow", "NotAction": "kms:Decrypt"}]},
    {"Statement": [{"Effect": "Maybe", "Action": "kms:Decrypt"}]},
])
def test_unsupported_policies_refused(bad):
    with pytest.raises(policy.PolicyError):
        policy.evaluate(bad, "kms:Decrypt", {})


@pytest.mark.parametrize(("pcrs", "message"), [
    ({1: [P1]}, "PCR0"),
    ({0: ["00" * 48]}, "debug-mode"),
    ({0: ["aa" * 32]}, "48 bytes"),
    ({0: ["zz"]}, "not hex"),
])
def test_builder_refuses_bad_measurements(pcrs, message):
    with pytest.raises(ValueError, match=message):
        policy.build_key_policy(role_arn=ROLE, pcrs=pcrs)
