"""``swqos manifest root init | sign | rotate | show``: the trust root's key ceremony.

The root is built from public keys only; each root key holder then adds their signature with
``root sign`` on their own (offline) machine, like ``manifest sign`` for manifests. Nothing here
ever needs more than one private key at a time. docs/kill-switch.md has the runbook.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from swqos_killswitch.bundle import is_bundle, write_signature
from swqos_killswitch.manifest import format_time
from swqos_killswitch.root import Root, RootError, build_root, check_rotation, parse_root
from swqos_killswitch.signing import SignatureError, key_id, load_private_key, load_public_key
from swqos_killswitch.trust import tally


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def _password(env: str | None) -> bytes | None:
    if not env:
        return None
    if env not in os.environ:
        raise SystemExit(f"error: environment variable {env} is not set")
    return os.environ[env].encode()


def _pubs(paths: list[str]) -> list[ec.EllipticCurvePublicKey]:
    keys = []
    for p in paths:
        try:
            keys.append(load_public_key(Path(p).read_bytes()))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: {p}: {exc}") from None
    return keys


def _load(path: str) -> tuple[Root, bytes]:
    try:
        data = Path(path).read_bytes()
        return parse_root(data), data
    except (OSError, RootError) as exc:
        raise SystemExit(f"error: {path}: {exc}") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _signature_status(root: Root, data: bytes, sig_path: Path, previous: Root | None) -> dict[str, object]:
    """Which root keys signed, and whether this root's (and the previous root's) threshold is met."""
    if not sig_path.exists():
        status: dict[str, object] = {"signed_by": [], "threshold_met": False}
        if previous is not None:
            status["previous_threshold_met"] = False
        return status
    sig = sig_path.read_bytes()
    own = tally(data, sig, root.root_keys(), other_role=root.manifest_keyids)
    status = {"signed_by": list(own.valid), "threshold": root.root.threshold,
              "threshold_met": len(own.valid) >= root.root.threshold,
              "ignored": [{"keyid": k, "reason": r} for k, r in own.ignored]}
    if previous is not None:
        old = tally(data, sig, previous.root_keys(), other_role=previous.manifest_keyids)
        status.update(previous_signed_by=list(old.valid), previous_threshold=previous.root.threshold,
                      previous_threshold_met=len(old.valid) >= previous.root.threshold)
    return status


def _print_next(root: Root, out: Path, previous: Root | None) -> None:
    print(f"root:    {out} (v{root.version}, scope {root.scope}, expires {format_time(root.expires)})")
    print(f"sha256:  {root.sha256}")
    need = f"{root.root.threshold} of its {len(root.root.keyids)} root keys"
    if previous is not None:
        need += f" and {previous.root.threshold} of the {len(previous.root.keyids)} root keys of v{previous.version}"
    print(f"next:    each root key holder runs `swqos manifest root sign --key ROOT.key --root {out}"
          + (" --previous OLD-ROOT.json" if previous else "") + f"`; it needs {need}")


def cmd_init(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists():
        return _err(f"{out} exists; refusing to overwrite a root")
    now = _now()
    try:
        data = build_root(
            version=1, scope=args.scope, issued_at=now, expires=now + dt.timedelta(days=args.expires_in_days),
            root_keys=_pubs(args.root_key), root_threshold=args.root_threshold,
            manifest_keys=_pubs(args.manifest_key), halt_threshold=args.halt_threshold,
            lift_threshold=args.lift_threshold, lift_timelock_seconds=int(args.lift_timelock_hours * 3600),
        )
    except RootError as exc:
        return _err(f"invalid root: {exc}")
    out.write_bytes(data)
    root = parse_root(data)
    _print_next(root, out, None)
    print("then pin it in every proxy: root = \"root.json\" and root_sha256 = \"" + root.sha256 + "\"")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    root, data = _load(args.root)
    previous = _load(args.previous)[0] if args.previous else None
    try:
        key = load_private_key(Path(args.key), _password(args.password_env))
    except (OSError, ValueError) as exc:
        return _err(str(exc))
    kid = key_id(key.public_key())
    allowed = set(root.root.keyids) | (set(previous.root.keyids) if previous else set())
    if kid not in allowed:
        return _err(f"key {kid} is not a root key of this root" + (" nor of the previous one" if previous else "")
                    + " (manifest keys sign manifests, never roots)")
    sig_path = Path(args.out_signature or f"{args.root}.sig")
    if sig_path.exists() and not is_bundle(sig_path.read_bytes()):
        return _err(f"{sig_path} is not a signature bundle")
    try:
        write_signature(data, sig_path, key, bundle=True)
    except ValueError as exc:
        return _err(str(exc))
    status = _signature_status(root, data, sig_path, previous)
    print(f"signed {args.root} (v{root.version}) with root key {kid}")
    print(json.dumps(status, indent=2))
    return 0


def _key_ids(values: list[str]) -> set[str]:
    """Key ids given as hex or as a public key file."""
    out = set()
    for v in values:
        out.add(v.lower() if len(v) == 64 and all(c in "0123456789abcdefABCDEF" for c in v)
                else key_id(_pubs([v])[0]))
    return out


def cmd_rotate(args: argparse.Namespace) -> int:
    old, _ = _load(args.old)
    out = Path(args.out)
    if out.exists():
        return _err(f"{out} exists; refusing to overwrite a root")
    drop_root, drop_manifest = _key_ids(args.remove_root_key), _key_ids(args.remove_manifest_key)
    root_keys = [old.keys[k] for k in old.root.keyids if k not in drop_root] + _pubs(args.add_root_key)
    manifest_keys = [old.keys[k] for k in old.manifest_keyids if k not in drop_manifest] + _pubs(args.add_manifest_key)
    now = max(_now(), old.issued_at)
    try:
        data = build_root(
            version=old.version + 1, scope=old.scope, issued_at=now,
            expires=now + dt.timedelta(days=args.expires_in_days),
            root_keys=root_keys, root_threshold=args.root_threshold or min(old.root.threshold, len(root_keys)),
            manifest_keys=manifest_keys,
            halt_threshold=args.halt_threshold or min(old.halt_threshold, len(manifest_keys)),
            lift_threshold=args.lift_threshold or min(old.lift_threshold, len(manifest_keys)),
            lift_timelock_seconds=(int(args.lift_timelock_hours * 3600) if args.lift_timelock_hours is not None
                                   else old.lift_timelock_seconds),
        )
        new = parse_root(data)
        check_rotation(old, new)
    except RootError as exc:
        return _err(f"invalid root: {exc}")
    out.write_bytes(data)
    _print_next(new, out, old)
    print(f"publish it as {new.version}.root.json and {new.version}.root.json.sig next to the manifest "
          "(or under root_url); proxies pick it up on their next poll")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    root, data = _load(args.root)
    previous = _load(args.previous)[0] if args.previous else None
    sig_path = Path(args.signature or f"{args.root}.sig")
    problems = []
    try:
        status = _signature_status(root, data, sig_path, previous)
    except (OSError, SignatureError) as exc:
        return _err(f"signatures REFUSED: {exc}")
    if previous is not None:
        try:
            check_rotation(previous, root)
        except RootError as exc:
            problems.append(f"not a successor of {args.previous}: {exc} ({exc.label})")
        if not status.get("previous_threshold_met"):
            problems.append(f"fewer than {previous.root.threshold} signatures of v{previous.version}'s root keys")
    if not status.get("threshold_met"):
        problems.append(f"fewer than {root.root.threshold} signatures of its own root keys")
    now = dt.datetime.now(dt.UTC)
    if root.expired(now):
        problems.append(f"expired at {format_time(root.expires)}")
    if args.pin and args.pin.lower() != root.sha256:
        problems.append(f"sha256 is {root.sha256}, not the pin {args.pin.lower()}")
    print(json.dumps({**root.summary(), "signatures": status}, indent=2))
    if problems:
        return _err("NOT USABLE: " + "; ".join(problems))
    print(f"OK: root v{root.version}, pin sha256 {root.sha256}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``manifest root ...`` under the ``manifest`` command's sub-parsers."""
    r = sub.add_parser("root", help="the trust root: who may sign manifests, and how many of them")
    rsub = r.add_subparsers(dest="root_command", required=True)

    i = rsub.add_parser("init", help="build root v1 from public keys (then each root key holder signs it)")
    i.add_argument("--scope", required=True, help="fleet/environment (the proxies' scope)")
    i.add_argument("--root-key", action="append", required=True, metavar="PUB", help="a root key (repeat)")
    i.add_argument("--root-threshold", type=int, required=True, help="root signatures a new root needs")
    i.add_argument("--manifest-key", action="append", required=True, metavar="PUB", help="a manifest key (repeat)")
    i.add_argument("--halt-threshold", type=int, required=True, help="manifest signatures any manifest needs")
    i.add_argument("--lift-threshold", type=int, required=True, help="manifest signatures a lift needs (>= halt)")
    i.add_argument("--lift-timelock-hours", type=float, required=True,
                   help="a lift's not_before must be at least this long after its issued_at")
    i.add_argument("--expires-in-days", type=float, default=365.0, help="validity (default 365); rotate before it")
    i.add_argument("--out", default="root.json")
    i.set_defaults(func=cmd_init)

    s = rsub.add_parser("sign", help="add one root key's signature to ROOT.sig (a bundle)")
    s.add_argument("--key", required=True, help="a root key (PKCS#8 PEM, P-256)")
    s.add_argument("--password-env")
    s.add_argument("--root", required=True, help="the root to sign")
    s.add_argument("--previous", help="for a rotation: the root it replaces (its root keys may sign too)")
    s.add_argument("--out-signature", help="default: root + .sig")
    s.set_defaults(func=cmd_sign)

    t = rsub.add_parser("rotate", help="build root N+1 from root N with keys or thresholds changed")
    t.add_argument("--from", dest="old", required=True, help="the current root")
    t.add_argument("--out", required=True, help="the new root (publish as <N+1>.root.json)")
    t.add_argument("--add-root-key", action="append", default=[], metavar="PUB")
    t.add_argument("--remove-root-key", action="append", default=[], metavar="KEYID|PUB")
    t.add_argument("--root-threshold", type=int)
    t.add_argument("--add-manifest-key", action="append", default=[], metavar="PUB")
    t.add_argument("--remove-manifest-key", action="append", default=[], metavar="KEYID|PUB")
    t.add_argument("--halt-threshold", type=int)
    t.add_argument("--lift-threshold", type=int)
    t.add_argument("--lift-timelock-hours", type=float)
    t.add_argument("--expires-in-days", type=float, default=365.0)
    t.set_defaults(func=cmd_rotate)

    w = rsub.add_parser("show", help="print a root, its pin (sha256) and who signed it")
    w.add_argument("root")
    w.add_argument("--signature", help="default: root + .sig")
    w.add_argument("--previous", help="also check it as the successor of this root")
    w.add_argument("--pin", help="also require this sha256")
    w.set_defaults(func=cmd_show)
