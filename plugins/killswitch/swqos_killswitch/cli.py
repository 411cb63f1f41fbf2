"""``swqos manifest keygen | sign | verify | show | drill``.

Wired into ``swqos`` by :func:`add_commands`. Signatures are in the ``cosign sign-blob --key``
format, so either tool can sign and either can verify (``cosign verify-blob --key cosign.pub
--signature revocation.json.sig --insecure-ignore-tlog revocation.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path

from swqos_core.killswitch.manifest import ManifestError, build_manifest, format_time, parse_manifest
from swqos_core.killswitch.signing import (
    PinnedKey,
    SignatureError,
    generate_private_key,
    key_id,
    load_private_key,
    private_key_pem,
    public_key_pem,
    sign_blob,
    verify_blob,
    write_private_file,
)


def _password(env: str | None) -> bytes | None:
    if not env:
        return None
    value = os.environ.get(env)
    if value is None:
        raise SystemExit(f"error: environment variable {env} is not set")
    return value.encode()


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def cmd_keygen(args: argparse.Namespace) -> int:
    out_key, out_pub = Path(args.out_key), Path(args.out_pub)
    for p in (out_key, out_pub):
        if p.exists():
            return _err(f"{p} exists; refusing to overwrite a key")
    key = generate_private_key()
    write_private_file(out_key, private_key_pem(key, _password(args.password_env)))
    out_pub.write_bytes(public_key_pem(key.public_key()))
    print(f"private key: {out_key} (mode 0600; keep it offline)")
    print(f"public key:  {out_pub}")
    print(f"key_id:      {key_id(key.public_key())}")
    print("pin both in the proxy config: public_key = \"...\" and key_id = \"...\" under [layers.revocation.https]")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    try:
        key = load_private_key(Path(args.key), _password(args.password_env))
    except (OSError, ValueError) as exc:
        return _err(str(exc))
    if args.input:
        src = Path(args.input)
        data = src.read_bytes()
        out = src
    else:
        if args.version is None or not args.scope or not args.out:
            return _err("give --input FILE, or --version, --scope and --out to build a manifest")
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        try:
            data = build_manifest(
                version=args.version, scope=args.scope, issued_at=now,
                expires=now + dt.timedelta(hours=args.expires_in_hours),
                revoked_versions=args.revoke_version, revoked_measurements=args.revoke_measurement,
                min_version=args.min_version, key_id=key_id(key.public_key()),
                revoked_at=now if (args.revoke_version or args.revoke_measurement or args.min_version) else None,
                reason=args.reason,
            )
        except ManifestError as exc:
            return _err(f"invalid manifest: {exc}")
        out = Path(args.out)
        out.write_bytes(data)
    try:
        manifest = parse_manifest(data)  # never sign what proxies would refuse
    except ManifestError as exc:
        return _err(f"{out}: not a valid manifest: {exc}")
    if manifest.key_id is not None and manifest.key_id != key_id(key.public_key()):
        return _err(f"{out}: key_id in the manifest is not this key's id")
    sig_path = Path(args.signature_out or f"{out}.sig")
    sig_path.write_bytes(sign_blob(key, data) + b"\n")
    print(f"manifest:  {out} (v{manifest.version}, scope {manifest.scope}, expires {format_time(manifest.expires)})")
    print(f"signature: {sig_path}")
    print("publish both, the signature first (a proxy that fetches a new manifest with an old signature "
          "refuses it and retries next poll)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    path = Path(args.manifest)
    sig_path = Path(args.signature or f"{path}.sig")
    try:
        pinned = PinnedKey.from_file(Path(args.public_key), args.key_id)
        data, sig = path.read_bytes(), sig_path.read_bytes()
    except (OSError, ValueError) as exc:
        return _err(str(exc))
    try:
        verify_blob(pinned, data, sig)
        manifest = parse_manifest(data)
    except (SignatureError, ManifestError) as exc:
        return _err(f"REFUSED ({exc.label}): {exc}")
    problems = []
    if manifest.key_id is not None and manifest.key_id != pinned.key_id:
        problems.append("key_id in the manifest is not the pinned key's id")
    if args.scope and manifest.scope != args.scope:
        problems.append(f"scope is {manifest.scope!r}, not {args.scope!r}")
    if manifest.expired(dt.datetime.now(dt.UTC)):
        problems.append(f"expired at {format_time(manifest.expires)}")
    print(json.dumps(manifest.summary(), indent=2))
    if problems:
        return _err("REFUSED: " + "; ".join(problems))
    print(f"OK: signature verifies with key {pinned.key_id}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return _err(str(exc))
    sig: bytes | None = None
    if raw.lstrip().startswith(b"{") and b'"format"' in raw and b'"accepted_at"' in raw:
        # A proxy's persisted state file (state_dir/revocation-<name>.json).
        import base64

        rec = json.loads(raw)
        print(f"persisted state: accepted v{rec.get('version')} at {rec.get('accepted_at')}")
        raw, sig = base64.b64decode(rec["manifest"]), base64.b64decode(rec["signature"])
    elif args.signature or Path(f"{path}.sig").exists():
        sig = Path(args.signature or f"{path}.sig").read_bytes()
    try:
        manifest = parse_manifest(raw)
    except ManifestError as exc:
        return _err(f"not a valid manifest ({exc.label}): {exc}")
    summary = manifest.summary()
    now = dt.datetime.now(dt.UTC)
    summary["age_seconds"] = int((now - manifest.issued_at).total_seconds())
    summary["expired"] = manifest.expired(now)
    print(json.dumps(summary, indent=2))
    if args.public_key:
        if sig is None:
            return _err("no signature to check")
        try:
            verify_blob(PinnedKey.from_file(Path(args.public_key), args.key_id), raw, sig)
        except (SignatureError, ValueError, OSError) as exc:
            return _err(f"signature REFUSED: {exc}")
        print("signature: OK")
    else:
        print("signature: not checked (give --public-key)")
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    from swqos_core.killswitch.drill import run_drill

    return 0 if asyncio.run(run_drill(interval=args.interval, release=args.release)) else 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``manifest`` and its sub-commands to the ``swqos`` command line."""
    p = subparsers.add_parser("manifest", help="kill switch: create, sign, verify and drill revocation manifests")
    sub = p.add_subparsers(dest="manifest_command", required=True)

    k = sub.add_parser("keygen", help="create an ECDSA P-256 manifest signing key (cosign-compatible)")
    k.add_argument("--out-key", default="revocation.key", help="private key (PKCS#8 PEM, created 0600)")
    k.add_argument("--out-pub", default="revocation.pub", help="public key (PEM SPKI) to pin in proxies")
    k.add_argument("--password-env", help="encrypt the private key with the password in this environment variable")
    k.set_defaults(func=cmd_keygen)

    s = sub.add_parser("sign", help="build and/or sign a manifest (writes FILE.sig: base64 DER, cosign format)")
    s.add_argument("--key", required=True, help="PKCS#8 PEM private key (swqos manifest keygen)")
    s.add_argument("--password-env", help="environment variable holding the key's password")
    s.add_argument("--input", help="sign this existing manifest file as-is (its exact bytes)")
    s.add_argument("--out", help="where to write a newly built manifest")
    s.add_argument("--version", type=int, help="manifest version: must be above every version published before")
    s.add_argument("--scope", help="fleet/environment this manifest applies to (must match the proxies' scope)")
    s.add_argument("--revoke-version", action="append", default=[], metavar="VERSION", help="revoke a release")
    s.add_argument("--revoke-measurement", action="append", default=[], metavar="PCR0",
                   help="revoke an enclave image by its PCR0 (96 hex digits)")
    s.add_argument("--min-version", help="halt every release below this one")
    s.add_argument("--reason", help="short reason shown in the proxies' halt message")
    s.add_argument("--expires-in-hours", type=float, default=6.0,
                   help="validity; re-sign before it ends or proxies follow their on_stale policy (default 6)")
    s.add_argument("--signature-out", help="signature path (default: manifest path + .sig)")
    s.set_defaults(func=cmd_sign)

    v = sub.add_parser("verify", help="verify a manifest as a proxy would (signature, format, scope, expiry)")
    v.add_argument("--public-key", required=True)
    v.add_argument("--key-id", help="also require this key id")
    v.add_argument("--manifest", required=True)
    v.add_argument("--signature", help="default: manifest path + .sig")
    v.add_argument("--scope", help="also require this scope")
    v.set_defaults(func=cmd_verify)

    w = sub.add_parser("show", help="print a manifest (or a proxy's persisted state file)")
    w.add_argument("file")
    w.add_argument("--signature")
    w.add_argument("--public-key", help="also verify the signature with this key")
    w.add_argument("--key-id")
    w.set_defaults(func=cmd_show)

    d = sub.add_parser("drill", help="end-to-end kill-switch drill on a local HTTPS server (offline)")
    d.add_argument("--interval", type=float, default=2.0, help="poll interval of the staging proxy, seconds")
    d.add_argument("--release", default="0.0.0-drill", help="the dummy release version to revoke")
    d.set_defaults(func=cmd_drill)
