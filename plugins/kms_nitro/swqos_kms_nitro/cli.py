"""Operator commands: ``swqos attest verify``, ``swqos kms policy|seal|dev``.

Flag vocabulary, shared with the other swqos commands: ``--validator`` is the validator identity
public key in base58 (what ``[enclave] expected_public_key`` holds), ``--out`` a file written,
``--dev-dir`` a directory of development material. Every message about a file names its path.
Exit codes: 0 done, 1 refused (``attest verify``: the document did not verify; ``kms seal``: KMS
said no), 2 a bad option or an unreadable file.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from swqos_core.errors import ConfigError
from swqos_core.identity import read_keypair_file, to_base58
from swqos_kms_nitro import attestation, policy
from swqos_kms_nitro.provider import VALIDATOR_CONTEXT_KEY

#: The dev setup's made-up role: the fake KMS does not check principals, the policy names one anyway.
DEV_ROLE_ARN = "arn:aws:iam::111122223333:role/swqos-enclave"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("attest", help="Nitro attestation documents")
    asub = p.add_subparsers(dest="attest_command", metavar="SUBCOMMAND", required=True)
    v = asub.add_parser("verify", help="verify a Nitro attestation document (COSE_Sign1, raw or base64)")
    v.add_argument("doc", help="document file, raw CBOR or base64 ('-' for stdin)")
    v.add_argument("--nonce", metavar="HEX", help="hex nonce the document must carry")
    v.add_argument("--validator", metavar="BASE58",
                   help="validator identity public key (base58) the document's public_key must be")
    v.add_argument("--identity", action="store_true",
                   help="a GetIdentity document: also require the swqos identity user_data label")
    v.add_argument("--expect-pcr", action="append", default=[], metavar="N=HEX",
                   help="expected PCR value; repeat an index to allow several values")
    v.add_argument("--at", help="check certificates at: 'document' (its own timestamp), unix ms, or ISO 8601 "
                                "(default: now)")
    v.add_argument("--max-age", type=float, help="refuse documents older than this many seconds at --at")
    v.add_argument("--allow-debug", action="store_true", help="accept all-zero PCRs (debug-mode enclaves)")
    v.add_argument("--root", metavar="PEM", help="PEM root to trust instead of the AWS Nitro root (needs --root-sha256)")
    v.add_argument("--root-sha256", metavar="HEX", help="SHA-256 fingerprint pinning --root")
    v.set_defaults(func=cmd_attest_verify)

    p = subparsers.add_parser("kms", help="KMS key policy, sealing and a local fake setup")
    ksub = p.add_subparsers(dest="kms_command", metavar="SUBCOMMAND", required=True)
    pol = ksub.add_parser("policy", help="print a key policy that releases the key only to approved images")
    for n in (0, 1, 2, 3, 4, 8):
        pol.add_argument(f"--pcr{n}", action="append", default=[], metavar="HEX",
                         help=f"allowed PCR{n} (repeat during an upgrade: old and new)"
                         + (" [required]" if n == 0 else ""))
    pol.add_argument("--role-arn", required=True, help="IAM role of the parent instance (the enclave's caller)")
    pol.add_argument("--admin-arn", help="key administrators (default: the account root); never get Decrypt")
    pol.add_argument("--sealer-arn", help="who may Encrypt (seal) the identity key (default: --admin-arn)")
    pol.add_argument("--validator", help="base58 identity public key: also require EncryptionContext validator=it")
    pol.set_defaults(func=cmd_kms_policy)

    s = ksub.add_parser("seal", help="encrypt an identity key under a KMS key for the enclave to unseal")
    s.add_argument("--kms-key", required=True, metavar="ARN",
                   help="the KMS key to seal under: key ARN, key id or alias (the provider's key_id)")
    s.add_argument("--identity-key", required=True, metavar="FILE", help="Solana keypair file (JSON, mode 0600)")
    s.add_argument("--context", action="append", default=[], metavar="K=V",
                   help="extra EncryptionContext entries (validator=<public key> is always added)")
    s.add_argument("--out", required=True, metavar="FILE",
                   help="where to write the CiphertextBlob (the provider's ciphertext_file)")
    s.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
                   help="AWS region of the KMS key (default $AWS_REGION or $AWS_DEFAULT_REGION)")
    s.add_argument("--endpoint-url", metavar="URL", help="KMS endpoint instead of the region's (a VPC endpoint, a test KMS)")
    s.set_defaults(func=cmd_kms_seal)

    d = ksub.add_parser("dev", help="run a fake KMS and write an enclave config that boots through it")
    d.add_argument("--dev-dir", required=True, metavar="DIR",
                   help="directory for the test PKI, sealed key and enclave.toml (created, mode 0700)")
    d.add_argument("--port", type=int, default=0, help="fake KMS port on 127.0.0.1 (default: any free port)")
    d.add_argument("--region", default="eu-west-1", help="region the fake KMS claims to be in (default eu-west-1)")
    d.set_defaults(func=cmd_kms_dev)


# --- attest verify ---------------------------------------------------------------------------


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from None


def _read_document(name: str) -> bytes:
    raw = sys.stdin.buffer.read() if name == "-" else _read_file(Path(name), "document")
    # A document starts with 0x84 (array of 4) or 0xd2 (tag 18); otherwise try base64 text.
    if raw[:1] in (b"\x84", b"\xd2"):
        return raw
    try:
        return base64.b64decode(b"".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        return raw


def _parse_hex(text: str, flag: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{flag} wants hex, got {text!r}") from None


def _parse_at(text: str | None) -> Any:
    if text is None:
        return None
    if text == "document":
        return "document"
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--at wants 'document', unix milliseconds or ISO 8601, got {text!r}") from None
    if at.tzinfo is None:
        raise ValueError(f"--at needs a UTC offset (2026-01-02T03:04:05Z), got {text!r}")
    return at


def _parse_expected(items: list[str]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for item in items:
        index, sep, value = item.partition("=")
        if not sep or not index.strip().isdigit():
            raise ValueError(f"--expect-pcr wants N=HEX, got {item!r}")
        out.setdefault(int(index), []).append(attestation.parse_pcr_hex(value))
    return out


def _parse_validator(text: str) -> bytes:
    from swqos_core.identity import from_base58

    try:
        return from_base58(text)
    except (ValueError, ConfigError):
        raise ValueError(f"--validator wants a base58 Ed25519 public key (32 bytes), got {text!r}") from None


def cmd_attest_verify(args: argparse.Namespace) -> int:
    try:
        document = _read_document(args.doc)
        root = None
        if args.root:
            if not args.root_sha256:
                raise ValueError("--root needs --root-sha256 (a root is trusted only when pinned)")
            root = attestation.load_root(_read_file(Path(args.root), "root certificate"), args.root_sha256)
        nonce = _parse_hex(args.nonce, "--nonce") if args.nonce else None
        public_key = _parse_validator(args.validator) if args.validator else None
        doc = attestation.verify(
            document, root=root, at=_parse_at(args.at), max_age=args.max_age,
            expected_pcrs=_parse_expected(args.expect_pcr) or None, nonce=nonce, public_key=public_key,
            user_data=attestation.IDENTITY_USER_DATA if args.identity else None, allow_debug=args.allow_debug,
        )
    except attestation.AttestationError as exc:
        print(f"REFUSED: {exc.reason}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"verified": True, **doc.summary()}, indent=2))
    return 0


# --- kms policy ------------------------------------------------------------------------------


def cmd_kms_policy(args: argparse.Namespace) -> int:
    pcrs = {n: getattr(args, f"pcr{n}") for n in (0, 1, 2, 3, 4, 8) if getattr(args, f"pcr{n}")}
    try:
        doc = policy.build_key_policy(role_arn=args.role_arn, pcrs=pcrs, admin_arn=args.admin_arn,
                                      sealer_arn=args.sealer_arn, validator=args.validator)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(policy.dumps(doc))
    return 0


# --- kms seal --------------------------------------------------------------------------------


def _context(items: list[str], validator: str) -> dict[str, str]:
    ctx: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--context wants K=V, got {item!r}")
        ctx[key] = value
    if ctx.get(VALIDATOR_CONTEXT_KEY, validator) != validator:
        raise ValueError("the validator context entry is the identity public key; do not set it")
    ctx[VALIDATOR_CONTEXT_KEY] = validator
    return ctx


def seal_seed(client: Any, key_id: str, seed: bytes | bytearray, context: dict[str, str]) -> tuple[bytes, str]:
    """KMS ``Encrypt`` of the 32-byte seed; returns (CiphertextBlob, key ARN)."""
    resp = client.encrypt(KeyId=key_id, Plaintext=bytes(seed), EncryptionContext=context)
    return resp["CiphertextBlob"], resp.get("KeyId", key_id)


def public_of(seed: bytes | bytearray) -> bytes:
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(seed)).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def cmd_kms_seal(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    if not args.region:
        print("error: --region (or AWS_REGION) is required", file=sys.stderr)
        return 2
    try:
        seed = read_keypair_file(Path(args.identity_key))
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read identity key {args.identity_key}: {exc.strerror}", file=sys.stderr)
        return 2
    validator = to_base58(public_of(seed))
    try:
        ctx = _context(args.context, validator)
        client = boto3.client("kms", region_name=args.region, endpoint_url=args.endpoint_url)
        blob, arn = seal_seed(client, args.kms_key, seed, ctx)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as exc:
        print(f"error: KMS Encrypt failed: {exc}", file=sys.stderr)
        return 1
    finally:
        seed[:] = bytes(len(seed))
    try:
        Path(args.out).write_bytes(blob)
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    extra = {k: v for k, v in ctx.items() if k != VALIDATOR_CONTEXT_KEY}
    print(f"sealed identity {validator} under {arn} into {args.out}\n")
    print("enclave config:\n")
    print(f'[enclave]\nexpected_public_key = "{validator}"\n')
    print("[layers.key_provider.nitro]")
    print(f'expected_public_key = "{validator}"\nkey_id = "{arn}"\nregion = "{args.region}"')
    print(f'ciphertext_file = "{args.out}"')
    if extra:
        print("encryption_context = { " + ", ".join(f'{k} = "{v}"' for k, v in extra.items()) + " }")
    return 0


# --- kms dev ---------------------------------------------------------------------------------


@dataclass
class DevSetup:
    directory: Path
    kms: Any  # FakeKms
    key_arn: str
    public_key: str
    root_sha256: str
    enclave_config: Path


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def dev_setup(directory: Path, *, port: int = 0, region: str = "eu-west-1") -> DevSetup:
    """Fake PKI + running fake KMS + a freshly sealed identity + enclave.toml using ``nitro_fake``.

    The caller owns ``setup.kms`` (stop it when done): its keys live in memory only.
    """
    import boto3

    from swqos_kms_nitro.fake_kms import FakeKms
    from swqos_kms_nitro.fake_nsm import FakePki, default_pcrs

    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    pki = FakePki.generate()
    pki.save(directory / "fake-nsm")
    pcrs = default_pcrs()
    seed = bytearray(os.urandom(32))
    validator = to_base58(public_of(seed))
    key_policy = policy.build_key_policy(
        role_arn=DEV_ROLE_ARN, pcrs={i: [pcrs[i].hex()] for i in (0, 1, 2)}, validator=validator
    )
    (directory / "policy.json").write_text(policy.dumps(key_policy) + "\n")
    kms = FakeKms(pki.root_cert, region=region, port=port).start()
    try:
        key = kms.create_key(key_policy)
        client = boto3.client("kms", region_name=region, endpoint_url=kms.endpoint_url,
                              aws_access_key_id="AKIDSWQOSFAKE", aws_secret_access_key="fake-secret")  # noqa: S106
        blob, arn = seal_seed(client, key.arn, seed, {VALIDATOR_CONTEXT_KEY: validator})
    except Exception:
        kms.stop()
        raise
    finally:
        seed[:] = bytes(32)
    (directory / "identity.sealed").write_bytes(blob)
    (directory / "identity.pub").write_text(validator + "\n")
    config = directory / "enclave.toml"
    config.write_text(
        "# Generated by `swqos kms dev`: a FAKE NSM and a FAKE KMS. Never use in production.\n"
        "[swqos]\n"
        'plugins = ["payload_tls_cv", "kms_nitro"]\n'
        "allow_test_plugins = true\n\n"
        "[enclave]\n"
        f"listen = {_toml_str('unix://' + str(directory / 'enclave.sock'))}\n"
        f"expected_public_key = {_toml_str(validator)}\n\n"
        "[pipeline]\n"
        'payload_match = "tls_cv"\n'
        'key_provider = "nitro_fake"\n'
        'signer = "ed25519"\n\n'
        "[layers.key_provider.nitro_fake]\n"
        f"expected_public_key = {_toml_str(validator)}\n"
        f"key_id = {_toml_str(arn)}\n"
        f"region = {_toml_str(region)}\n"
        'ciphertext_file = "identity.sealed"\n'
        f"endpoint_url = {_toml_str(kms.endpoint_url)}\n"
        'fake_pki_dir = "fake-nsm"\n'
        "max_attempts = 1\n"
    )
    return DevSetup(directory, kms, arn, validator, pki.root_sha256, config)


def cmd_kms_dev(args: argparse.Namespace) -> int:
    try:
        setup = dev_setup(Path(args.dev_dir), port=args.port, region=args.region)
    except OSError as exc:
        print(f"error: cannot set up {exc.filename or args.dev_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"fake KMS listening on {setup.kms.endpoint_url} (key {setup.key_arn})")
    print(f"identity {setup.public_key} sealed into {setup.directory / 'identity.sealed'}")
    print(f"key policy: {setup.directory / 'policy.json'}")
    print("\nIn another terminal, boot the enclave through fake NSM -> boto3 -> this KMS:\n")
    print(f"  swqos enclave --config {setup.enclave_config}\n")
    print("Check an attestation document from it with:\n")
    print(f"  swqos attest verify DOC --root {setup.directory / 'fake-nsm' / 'fake-nsm-root.pem'} "
          f"--root-sha256 {setup.root_sha256}\n")
    print("Ctrl-C stops the fake KMS (its keys live in memory: the sealed file dies with it).")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    setup.kms.stop()
    return 0
