"""A signature bundle: one cosign-format signature per signer over the same exact bytes.

Published as the document's ``.sig`` file once more than one key signs it::

    {
      "_type": "swqos/signatures/v1",
      "sha256": "<hex SHA-256 of the signed bytes>",
      "signatures": [
        {"keyid": "<hex SHA-256 of the signer's DER SPKI>", "sig": "<base64 DER ECDSA P-256>"}
      ]
    }

Each ``sig`` is byte for byte what ``cosign sign-blob --key`` writes, so any one of them can be
checked on its own with ``base64 -d | openssl dgst -sha256 -verify signer.pub -signature /dev/stdin``
(docs/kill-switch.md). ``keyid`` only says which key to try: a signature counts only if it verifies
with the key the *trust root* lists under that id, never with key material from the bundle.

A bare cosign signature (or a sigstore bundle) is read as a one-entry bundle with no key id, so a
single-key manifest keeps working unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from swqos_killswitch import strict_json
from swqos_killswitch.signing import MAX_SIGNATURE_BYTES, SignatureError, decode_signature, key_id, sign_blob

BUNDLE_TYPE = "swqos/signatures/v1"
#: More entries than any sane signer set; bounds the verification work one poll can cause.
MAX_SIGNATURES = 32
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
_B64 = re.compile(r"\A[A-Za-z0-9+/]{8,200}={0,2}\Z")


@dataclass(frozen=True)
class Entry:
    """One signature: the key id it claims (None for a bare cosign signature) and its DER bytes."""

    keyid: str | None
    der: bytes


def is_bundle(sig_file: bytes) -> bool:
    """True when ``sig_file`` is a swqos signature bundle (not a bare or sigstore signature)."""
    text = sig_file.strip()
    if not text.startswith(b"{"):
        return False
    try:
        return json.loads(text).get("_type") == BUNDLE_TYPE
    except (ValueError, AttributeError):
        return False


def parse_signatures(sig_file: bytes, data: bytes) -> list[Entry]:
    """The signatures a ``.sig`` file holds for ``data``. Raises :class:`SignatureError`.

    Entries are returned as listed; counting distinct signers is the trust's job (a key listed
    twice is reported, and counted once).
    """
    if len(sig_file) > MAX_SIGNATURE_BYTES:
        raise SignatureError("signature file is too large", "signature_oversize")
    if not is_bundle(sig_file):
        return [Entry(None, decode_signature(sig_file, data))]
    try:
        obj = strict_json.loads(sig_file)
    except strict_json.StrictJsonError as exc:
        raise SignatureError(f"signature bundle: {exc}", "malformed_signature") from None
    if set(obj) != {"_type", "sha256", "signatures"}:
        raise SignatureError("signature bundle must have exactly _type, sha256 and signatures", "malformed_signature")
    digest = obj["sha256"]
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise SignatureError("signature bundle sha256 must be 64 lower-case hex digits", "malformed_signature")
    if not hmac.compare_digest(digest, hashlib.sha256(data).hexdigest()):
        raise SignatureError("signature bundle is for different bytes", "bundle_mismatch")
    sigs = obj["signatures"]
    if not isinstance(sigs, list) or len(sigs) > MAX_SIGNATURES:
        raise SignatureError(f"signatures must be a list of at most {MAX_SIGNATURES}", "malformed_signature")
    out = []
    for i, item in enumerate(sigs):
        if not (isinstance(item, dict) and set(item) == {"keyid", "sig"} and isinstance(item["keyid"], str)
                and _HEX64.match(item["keyid"]) and isinstance(item["sig"], str) and _B64.match(item["sig"])):
            raise SignatureError(f"signatures[{i}] must be {{keyid, sig}}", "malformed_signature")
        out.append(Entry(item["keyid"], decode_signature(item["sig"].encode("ascii"), data)))
    return out


def dump_bundle(data: bytes, entries: list[tuple[str, bytes]]) -> bytes:
    """Serialise a bundle for ``data`` from (key id, base64 signature) pairs, in the given order."""
    obj = {
        "_type": BUNDLE_TYPE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "signatures": [{"keyid": kid, "sig": sig.decode("ascii")} for kid, sig in entries],
    }
    out = (json.dumps(obj, indent=2) + "\n").encode()
    if len(out) > MAX_SIGNATURE_BYTES:
        raise ValueError(f"the bundle would exceed the {MAX_SIGNATURE_BYTES}-byte cap proxies accept")
    return out


def bundle_entries(sig_file: bytes) -> list[tuple[str, bytes]]:
    """The (key id, base64 signature) pairs of an existing bundle, for adding one more."""
    obj = json.loads(sig_file)
    return [(item["keyid"], item["sig"].encode("ascii")) for item in obj["signatures"]]


def write_signature(data: bytes, sig_path: Path, key: ec.EllipticCurvePrivateKey, *, bundle: bool) -> list[str]:
    """Sign ``data``: a bare cosign signature, or one more entry of a bundle. Returns the bundle's
    key ids after signing ([] for a bare signature). Raises ValueError for a refused bundle."""
    sig = sign_blob(key, data)
    kid = key_id(key.public_key())
    existing = sig_path.read_bytes() if sig_path.exists() else None
    if existing is not None and is_bundle(existing):
        bundle = True
    if not bundle:
        sig_path.write_bytes(sig + b"\n")
        return []
    entries: list[tuple[str, bytes]] = []
    if existing is not None and is_bundle(existing):
        try:
            parse_signatures(existing, data)  # same bytes, well-formed
        except SignatureError as exc:
            raise ValueError(f"{sig_path}: {exc} (remove it to start a new bundle)") from None
        entries = bundle_entries(existing)
        if kid in {k for k, _ in entries}:
            raise ValueError(f"{sig_path} already holds a signature by key {kid}")
    entries.append((kid, sig))
    sig_path.write_bytes(dump_bundle(data, entries))
    return [k for k, _ in entries]
