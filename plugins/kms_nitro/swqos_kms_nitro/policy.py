"""KMS key policies for the validator key: writing the real one, and evaluating a small subset.

The policy lets one IAM role call ``kms:Decrypt`` only with a Nitro attestation document whose
measurements match (``StringEqualsIgnoreCase`` on ``kms:RecipientAttestation:ImageSha384`` and
``...:PCR<n>``; a list of values per key allows old and new images during an upgrade), and adds
explicit Deny statements so that no other grant (the account-root default statement plus an IAM
policy, the classic trap) can ever get the key out as ``Plaintext``:

- one Deny of Decrypt per measured key with ``StringNotEqualsIgnoreCase``: a negated operator is
  true when the key is absent, so a Decrypt without any attestation is denied too. One statement
  per key, because keys inside one condition are ANDed and a Deny must fire when *any* differs;
- a Deny of ``kms:ReEncrypt*``, which would move the secret under a key without those conditions.

:func:`evaluate` implements just enough IAM semantics for the fake KMS to judge requests by the
same documents: Allow/Deny, Action wildcards, and the String(Not)Equals(IgnoreCase) and Null
operators (keys ANDed, values ORed, negated operators true on an absent key, explicit Deny wins).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from typing import Any

ATTESTATION_PREFIX = "kms:RecipientAttestation:"
IMAGE_KEY = ATTESTATION_PREFIX + "ImageSha384"

ADMIN_ACTIONS = [
    "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
    "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
    "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
]
SUPPORTED_OPERATORS = {"StringEquals", "StringEqualsIgnoreCase", "StringNotEquals", "StringNotEqualsIgnoreCase", "Null"}


class PolicyError(ValueError):
    """A policy uses something the evaluator does not implement (refused, never guessed)."""


def _pcr_hex(value: str) -> str:
    text = value.strip().lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"PCR value is not hex: {value!r}") from None
    if len(raw) != 48:
        raise ValueError(f"a Nitro PCR is 48 bytes (96 hex characters); got {len(raw)} bytes")
    if not any(raw):
        raise ValueError("an all-zero PCR is a debug-mode enclave; never allow it")
    return text


def build_key_policy(
    *,
    role_arn: str,
    pcrs: Mapping[int, Sequence[str]],
    admin_arn: str | None = None,
    sealer_arn: str | None = None,
    validator: str | None = None,
) -> dict[str, Any]:
    """The key policy for a validator key. ``pcrs[0]`` (the image) is required."""
    if 0 not in pcrs or not pcrs[0]:
        raise ValueError("PCR0 (the image measurement) is required")
    if not role_arn.startswith("arn:"):
        raise ValueError("role ARN must be an ARN (arn:aws:iam::<account>:role/<name>)")
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    admin = admin_arn or f"arn:aws:iam::{account}:root"
    sealer = sealer_arn or admin
    keys: dict[str, list[str]] = {}
    for index in sorted(pcrs):
        values = sorted({_pcr_hex(v) for v in pcrs[index]})
        keys[IMAGE_KEY if index == 0 else f"{ATTESTATION_PREFIX}PCR{index}"] = values
    allow_condition: dict[str, Any] = {"StringEqualsIgnoreCase": keys}
    if validator:
        allow_condition["StringEquals"] = {"kms:EncryptionContext:validator": validator}
    statements: list[dict[str, Any]] = [
        {
            "Sid": "KeyAdministrationWithoutDecrypt",
            "Effect": "Allow",
            "Principal": {"AWS": admin},
            "Action": ADMIN_ACTIONS,
            "Resource": "*",
        },
        {
            "Sid": "SealIdentityKey",
            "Effect": "Allow",
            "Principal": {"AWS": sealer},
            "Action": "kms:Encrypt",
            "Resource": "*",
        },
        {
            "Sid": "EnclaveDecryptWithApprovedImage",
            "Effect": "Allow",
            "Principal": {"AWS": role_arn},
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": allow_condition,
        },
    ]
    for key, values in keys.items():
        statements.append({
            "Sid": "DenyDecryptUnless" + key.rsplit(":", 1)[1].replace("ImageSha384", "Image") + "Matches",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {"StringNotEqualsIgnoreCase": {key: values}},
        })
    statements.append({
        "Sid": "DenyReEncrypt",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "kms:ReEncrypt*",
        "Resource": "*",
    })
    return {"Version": "2012-10-17", "Id": "swqos-validator-identity-key", "Statement": statements}


def validate_policy(policy: Mapping[str, Any]) -> None:
    """Refuse a policy the evaluator would have to guess about."""
    statements = policy.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise PolicyError("policy has no Statement list")
    for st in statements:
        if not isinstance(st, dict) or st.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError("every statement needs Effect Allow or Deny")
        if "NotAction" in st or "NotPrincipal" in st or "NotResource" in st:
            raise PolicyError("NotAction/NotPrincipal/NotResource are not supported by the fake KMS")
        if not isinstance(st.get("Action"), str | list):
            raise PolicyError("every statement needs an Action")
        for op, body in (st.get("Condition") or {}).items():
            if op not in SUPPORTED_OPERATORS:
                raise PolicyError(f"condition operator {op} is not supported by the fake KMS")
            if not isinstance(body, dict):
                raise PolicyError(f"condition {op} must map keys to values")


def _as_list(v: Any) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


def _condition_holds(op: str, key: str, wanted: list[str], context: Mapping[str, str]) -> bool:
    have = context.get(key)
    if op == "Null":
        want_absent = wanted[0].lower() == "true"
        return (have is None) == want_absent
    negated = op.startswith("StringNot")
    if have is None:
        return negated  # positive operators fail and negated ones hold on a missing key
    if op.endswith("IgnoreCase"):
        match = any(have.lower() == w.lower() for w in wanted)
    else:
        match = any(have == w for w in wanted)
    return not match if negated else match


def _statement_applies(st: Mapping[str, Any], action: str, context: Mapping[str, str]) -> bool:
    if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _as_list(st["Action"])):
        return False
    for op, body in (st.get("Condition") or {}).items():
        for key, wanted in body.items():
            if not _condition_holds(op, key, _as_list(wanted), context):
                return False
    return True


def evaluate(policy: Mapping[str, Any], action: str, context: Mapping[str, str]) -> tuple[bool, str]:
    """``(allowed, why)``. Explicit Deny wins, then any Allow, else the implicit deny.

    Principals are not evaluated: the fake KMS has a single caller (documented limitation).
    """
    validate_policy(policy)
    statements = policy["Statement"]
    statements = [statements] if isinstance(statements, dict) else statements
    for st in statements:
        if st["Effect"] == "Deny" and _statement_applies(st, action, context):
            return False, f"explicit deny in statement {st.get('Sid', '?')}"
    for st in statements:
        if st["Effect"] == "Allow" and _statement_applies(st, action, context):
            return True, f"allowed by statement {st.get('Sid', '?')}"
    return False, "no statement allows it"


def dumps(policy: Mapping[str, Any]) -> str:
    return json.dumps(policy, indent=2)
