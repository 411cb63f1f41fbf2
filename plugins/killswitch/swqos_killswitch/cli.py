"""``swqos manifest keygen | sign | verify | show | drill | root ...``.

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

from swqos_killswitch import root_cli
from swqos_killswitch.bundle import write_signature
from swqos_killswitch.manifest import ManifestError, build_manifest, format_time, parse_manifest, parse_time
from swqos_killswitch.root import parse_root
from swqos_killswitch.signing import (
    PinnedKey,
    SignatureError,
    generate_private_key,
    key_id,
    load_private_key,
    private_key_pem,
    public_key_pem,
    write_private_file,
)
from swqos_killswitch.trust import ChainLink, RootTrust, SingleKeyTrust, verify_first_root, verify_root_signatures


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
    out_key, out_pub = Path(args.out), Path(args.out_pub)
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


def _time(text: str) -> dt.datetime:
    try:
        return parse_time(text, "time")
    except ManifestError:
        raise SystemExit(f"error: {text!r} is not a UTC time like 2026-04-21T12:00:00Z") from None


def cmd_sign(args: argparse.Namespace) -> int:
    try:
        key = load_private_key(Path(args.key), _password(args.password_env))
    except (OSError, ValueError) as exc:
        return _err(str(exc))
    bundle = args.bundle
    if args.input:
        src = Path(args.input)
        try:
            data = src.read_bytes()
        except OSError as exc:
            return _err(str(exc))
        out = src
    else:
        if args.version is None or not args.scope or not args.out:
            return _err("give --input FILE, or --version, --scope and --out to build a manifest")
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        not_before = None
        if args.not_before is not None:
            not_before = _time(args.not_before)
        elif args.not_before_in_hours is not None:
            not_before = now + dt.timedelta(hours=args.not_before_in_hours)
        try:
            data = build_manifest(
                version=args.version, scope=args.scope, issued_at=now,
                expires=now + dt.timedelta(hours=args.expires_in_hours),
                revoked_versions=args.revoke_version, revoked_measurements=args.revoke_measurement,
                min_version=args.min_version, key_id=None if bundle else key_id(key.public_key()),
                revoked_at=now if (args.revoke_version or args.revoke_measurement or args.min_version) else None,
                reason=args.reason, not_before=not_before,
            )
        except ManifestError as exc:
            return _err(f"invalid manifest: {exc}")
        out = Path(args.out)
        out.write_bytes(data)
        stale = Path(args.out_signature or f"{out}.sig")
        if stale.exists():
            stale.unlink()  # new bytes: an older signature or bundle is for something else
    try:
        manifest = parse_manifest(data)  # never sign what proxies would refuse
    except ManifestError as exc:
        return _err(f"{out}: not a valid manifest: {exc}")
    if manifest.key_id is not None and manifest.key_id != key_id(key.public_key()):
        return _err(f"{out}: key_id in the manifest is not this key's id")
    sig_path = Path(args.out_signature or f"{out}.sig")
    try:
        signers = write_signature(data, sig_path, key, bundle=bundle)
    except ValueError as exc:
        return _err(str(exc))
    print(f"manifest:  {out} (v{manifest.version}, scope {manifest.scope}, expires {format_time(manifest.expires)}"
          + (f", lift not before {format_time(manifest.not_before)}" if manifest.not_before else "") + ")")
    if signers:
        print(f"signature: {sig_path} (bundle, {len(signers)} signature(s): {', '.join(k[:16] for k in signers)})")
        print("add the next signer with: swqos manifest sign --key OTHER.key --input " + str(out))
    else:
        print(f"signature: {sig_path}")
    print("publish both, the signature first (a proxy that fetches a new manifest with an old signature "
          "refuses it and retries next poll)")
    return 0


def _trust_for(args: argparse.Namespace):
    """The trust ``verify`` and ``show`` check against: --root (threshold) or --public-key (one key)."""
    if args.root:
        root_path = Path(args.root)
        data = root_path.read_bytes()
        sig = Path(args.root_signature or f"{root_path}.sig").read_bytes()
        if args.root_sha256:
            link = verify_first_root(data, sig, args.root_sha256)
        else:
            root = parse_root(data)
            verify_root_signatures(root, data, sig, root, "root_below_threshold")
            link = ChainLink(root, data, sig)
        return RootTrust([link])
    if not args.public_key:
        raise ValueError("give --public-key (one key) or --root (a trust root)")
    return SingleKeyTrust(PinnedKey.from_file(Path(args.public_key), args.key_id))


def cmd_verify(args: argparse.Namespace) -> int:
    path = Path(args.manifest)
    sig_path = Path(args.signature or f"{path}.sig")
    try:
        trust = _trust_for(args)
        data, sig = path.read_bytes(), sig_path.read_bytes()
    except (OSError, ValueError, SignatureError) as exc:
        label = getattr(exc, "label", None)
        return _err(f"REFUSED ({label}): {exc}" if label else str(exc))
    try:
        tally = trust.tally(data, sig)
        if not tally.valid:
            raise SignatureError("no signature verifies with a trusted key", "bad_signature")
        manifest = parse_manifest(data)
    except (SignatureError, ManifestError) as exc:
        return _err(f"REFUSED ({exc.label}): {exc}")
    now = dt.datetime.now(dt.UTC)
    problems = []
    if manifest.key_id is not None and manifest.key_id not in trust.manifest_keyids():
        problems.append("key_id in the manifest is not a trusted key's id")
    if args.scope and manifest.scope != args.scope:
        problems.append(f"scope is {manifest.scope!r}, not {args.scope!r}")
    if manifest.expired(now):
        problems.append(f"expired at {format_time(manifest.expires)}")
    if trust.expired(now):
        problems.append("the trust root has expired")
    n = len(tally.valid)
    halt_ok, lift_ok = n >= trust.halt_threshold, n >= trust.lift_threshold
    timelock = trust.lift_timelock_seconds
    lock_ok = timelock == 0 or (manifest.not_before is not None
                                and (manifest.not_before - manifest.issued_at).total_seconds() >= timelock)
    report = {
        "manifest": manifest.summary(),
        "trust": trust.describe(),
        "signed_by": list(tally.valid),
        "ignored": [{"keyid": k, "reason": r} for k, r in tally.ignored],
        "halt_threshold": trust.halt_threshold,
        "halt_threshold_met": halt_ok,
        "lift_threshold": trust.lift_threshold,
        "lift_threshold_met": lift_ok,
        "lift_timelock_seconds": timelock,
        "lift_timelock_met": lock_ok,
        "lift_effective_from": format_time(manifest.not_before) if manifest.not_before else None,
    }
    print(json.dumps(report, indent=2))
    if not halt_ok:
        problems.append(f"{n} distinct trusted signer(s), a halt needs {trust.halt_threshold} (below_threshold)")
    if args.lift and not lift_ok:
        problems.append(f"{n} distinct trusted signer(s), a lift needs {trust.lift_threshold} (below_lift_threshold)")
    if args.lift and not lock_ok:
        problems.append(f"a lift needs not_before at least {timelock} s after issued_at (lift_without_timelock)")
    if problems:
        return _err("REFUSED: " + "; ".join(problems))
    print(f"OK: signed by {n} trusted key(s): {', '.join(tally.valid)}")
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
    if args.public_key or args.root:
        if sig is None:
            return _err("no signature to check")
        try:
            trust = _trust_for(args)
            tally = trust.tally(raw, sig)
        except (SignatureError, ValueError, OSError) as exc:
            return _err(f"signature REFUSED: {exc}")
        if len(tally.valid) < trust.halt_threshold:
            return _err(f"signature REFUSED: {len(tally.valid)} trusted signer(s), {trust.halt_threshold} needed")
        print(f"signature: OK ({len(tally.valid)} trusted signer(s): {', '.join(k[:16] for k in tally.valid)})")
    else:
        print("signature: not checked (give --public-key or --root)")
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    from swqos_killswitch.drill import run_drill
    from swqos_killswitch.threshold_drill import run_threshold_drill

    if args.threshold:
        return 0 if asyncio.run(run_threshold_drill(interval=args.interval, release=args.release,
                                                    timelock=args.timelock)) else 1
    return 0 if asyncio.run(run_drill(interval=args.interval, release=args.release)) else 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``manifest`` and its sub-commands to the ``swqos`` command line."""
    p = subparsers.add_parser("manifest", help="kill switch: create, sign, verify and drill revocation manifests")
    sub = p.add_subparsers(dest="manifest_command", required=True)

    k = sub.add_parser("keygen", help="create an ECDSA P-256 manifest signing key (cosign-compatible)")
    k.add_argument("--out", default="revocation.key", help="private key (PKCS#8 PEM, created 0600)")
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
    s.add_argument("--out-signature", help="signature path (default: manifest path + .sig)")
    s.add_argument("--bundle", action="store_true",
                   help="write a signature bundle (one signature per signer; for a trust root). An existing bundle "
                        "is always extended: each signer runs sign --input on the same file")
    nb = s.add_mutually_exclusive_group()
    nb.add_argument("--not-before", help="a lift takes effect only from this UTC time (2026-04-21T18:00:00Z)")
    nb.add_argument("--not-before-in-hours", type=float,
                    help="a lift takes effect only this many hours after issued_at (at least the root's timelock)")
    s.set_defaults(func=cmd_sign)

    v = sub.add_parser("verify", help="verify a manifest as a proxy would: who signed, thresholds, scope, expiry")
    v.add_argument("--public-key", help="single-key trust: the pinned manifest key")
    v.add_argument("--key-id", help="also require this key id")
    v.add_argument("--root", help="threshold trust: the current trust root (root.json)")
    v.add_argument("--root-signature", help="its signature bundle (default: root + .sig)")
    v.add_argument("--root-sha256", help="also require the root to have this hash (the pin)")
    v.add_argument("--lift", action="store_true", help="also require what a lift needs (lift threshold, timelock)")
    v.add_argument("--manifest", required=True)
    v.add_argument("--signature", help="default: manifest path + .sig")
    v.add_argument("--scope", help="also require this scope")
    v.set_defaults(func=cmd_verify)

    w = sub.add_parser("show", help="print a manifest (or a proxy's persisted state file)")
    w.add_argument("file")
    w.add_argument("--signature")
    w.add_argument("--public-key", help="also verify the signature with this key")
    w.add_argument("--key-id")
    w.add_argument("--root", help="also verify the signatures against this trust root")
    w.add_argument("--root-signature")
    w.add_argument("--root-sha256")
    w.set_defaults(func=cmd_show)

    d = sub.add_parser("drill", help="end-to-end kill-switch drill on a local HTTPS server (offline)")
    d.add_argument("--interval", type=float, default=2.0, help="poll interval of the staging proxy, seconds")
    d.add_argument("--release", default="0.0.0-drill", help="the dummy release version to revoke")
    d.add_argument("--threshold", action="store_true",
                   help="drill a trust root: 2-of-3 halt, 3-of-3 lift with a timelock; prints time to halt and to lift")
    d.add_argument("--timelock", type=float, default=2.0, help="lift timelock of the drill's root, seconds (--threshold)")
    d.set_defaults(func=cmd_drill)

    root_cli.add_commands(sub)
