"""Release integrity (threat model TB9): are the installed swqos files the ones that were released?

Two checks, both on the files as they are on disk now:

- **RECORD**: every installed ``swqos*`` distribution's files against the sha256 its own
  ``*.dist-info/RECORD`` lists (catches files changed after installation);
- **signed release manifest**: a JSON document listing each ``swqos*`` distribution, its version
  and the sha256 of each of its files, signed like a revocation manifest (cosign ``sign-blob``
  format, ECDSA P-256, key pinned by the operator). Catches a changed, missing or added file, a
  different version, and an added or missing ``swqos*`` distribution (a plugin slipped in).

What this does NOT protect against (docs/kill-switch.md, "Release integrity"): a process checking
itself is not a security boundary. Whoever can modify these files can also modify this module or
the config that asks for the check. It catches corruption, a botched or partial upgrade, and
tampering by someone who did not think of it. The real gates are install-time verification (the
release's signature/attestation checked before installing) and, for the enclave, PCR-bound KMS
key policy.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

from swqos_core.errors import ConfigError
from swqos_killswitch.signing import (
    PinnedKey,
    SignatureError,
    load_private_key,
    sign_blob,
    verify_blob,
)

RELEASE_TYPE = "swqos/release-manifest/v1"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_REPORTED = 50
#: dist-info files that differ per host or installer, never part of a release's identity.
_HOST_SPECIFIC = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def swqos_distributions(path: list[str] | None = None) -> dict[str, importlib.metadata.Distribution]:
    """Installed distributions named ``swqos*``, by normalised name (first on the path wins)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions(path=path) if path is not None else importlib.metadata.distributions():
        name = _norm(dist.metadata["Name"] or "")
        if name.startswith("swqos") and name not in found:
            found[name] = dist
    return found


def file_hash(path: Path) -> str:
    """``sha256=<urlsafe base64, no padding>``, RECORD's format."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            h.update(block)
    return "sha256=" + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def _excluded(rel: str) -> bool:
    parts = rel.split("/")
    if rel.startswith("../") or "__pycache__" in parts or rel.endswith(".pyc"):
        return True
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in _HOST_SPECIFIC


def _top_level(dist: importlib.metadata.Distribution) -> list[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return [line.strip() for line in text.splitlines() if line.strip()]
    names = set()
    for f in dist.files or ():
        first = f.parts[0] if f.parts else ""
        if first and first != ".." and not first.endswith((".dist-info", ".pth")) and not first.startswith("__"):
            names.add(first.removesuffix(".py"))
    return sorted(names)


def _package_dir(dist: importlib.metadata.Distribution, top: str) -> Path | None:
    candidate = Path(str(dist.locate_file(top)))
    if candidate.is_dir():
        return candidate
    # Editable installs keep the sources elsewhere; the import system knows where.
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def distribution_files(dist: importlib.metadata.Distribution) -> dict[str, str]:
    """Every file that makes up ``dist`` as installed here, hashed from disk.

    RECORD's entries (minus host-specific ones) plus every file under the distribution's
    top-level package directories: for an editable install those live outside site-packages
    and RECORD does not list them.
    """
    out: dict[str, str] = {}
    for f in dist.files or ():
        rel = str(f).replace("\\", "/")
        if _excluded(rel):
            continue
        p = Path(str(dist.locate_file(f)))
        if p.is_file():
            out[rel] = file_hash(p)
    for top in _top_level(dist):
        pkg = _package_dir(dist, top)
        if pkg is None:
            continue
        for p in sorted(pkg.rglob("*")):
            rel = f"{top}/{p.relative_to(pkg).as_posix()}"
            if p.is_file() and not _excluded(rel):
                out[rel] = file_hash(p)
    return dict(sorted(out.items()))


def record_problems(dist: importlib.metadata.Distribution) -> list[str]:
    """Files whose content no longer matches the hash in the distribution's own RECORD."""
    name = dist.metadata["Name"]
    problems = []
    for f in dist.files or ():
        if f.hash is None:
            continue
        p = Path(str(dist.locate_file(f)))
        if not p.is_file():
            problems.append(f"{name}: {f} is listed in RECORD but missing")
        elif file_hash(p) != f"{f.hash.mode}={f.hash.value}":
            problems.append(f"{name}: {f} does not match its RECORD hash")
    return problems


def create_release_manifest(release: str, path: list[str] | None = None) -> bytes:
    dists = swqos_distributions(path)
    doc = {
        "_type": RELEASE_TYPE,
        "release": release,
        "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "distributions": [
            {"name": name, "version": dist.version, "files": distribution_files(dist)}
            for name, dist in sorted(dists.items())
        ],
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def _parse(data: bytes) -> dict[str, dict[str, Any]]:
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("_type") != RELEASE_TYPE:
        raise ValueError(f"not a {RELEASE_TYPE} document")
    dists = doc.get("distributions")
    if not isinstance(dists, list):
        raise ValueError("distributions must be a list")
    out: dict[str, dict[str, Any]] = {}
    for d in dists:
        if not (isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("version"), str)
                and isinstance(d.get("files"), dict) and all(isinstance(v, str) for v in d["files"].values())):
            raise ValueError("each distribution needs name, version and files")
        if _norm(d["name"]) in out:
            raise ValueError(f"distribution {d['name']} is listed twice")
        out[_norm(d["name"])] = d
    return out


def compare_installed(expected: dict[str, dict[str, Any]], path: list[str] | None = None) -> list[str]:
    problems: list[str] = []
    installed = swqos_distributions(path)
    for name, want in sorted(expected.items()):
        dist = installed.get(name)
        if dist is None:
            problems.append(f"{name}: in the release manifest but not installed")
            continue
        if dist.version != want["version"]:
            problems.append(f"{name}: installed version {dist.version}, release manifest says {want['version']}")
            continue
        actual = distribution_files(dist)
        for rel, digest in sorted(want["files"].items()):
            if rel not in actual:
                problems.append(f"{name}: {rel} is missing")
            elif actual[rel] != digest:
                problems.append(f"{name}: {rel} was modified")
        extra = sorted(actual.keys() - want["files"].keys())
        problems += [f"{name}: {rel} is not part of the release" for rel in extra]
    problems += [f"{n}: installed but not part of the release" for n in sorted(installed.keys() - expected.keys())]
    for name in sorted(installed.keys() & expected.keys()):
        problems += record_problems(installed[name])
    return problems


def _cap(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_REPORTED:
        return problems
    return [*problems[:MAX_REPORTED], f"... and {len(problems) - MAX_REPORTED} more"]


def check_release(
    manifest_path: str | Path,
    signature_path: str | Path,
    public_key_path: str | Path,
    *,
    key_id: str | None = None,
    path: list[str] | None = None,
) -> list[str]:
    """Verify the signed release manifest, then the installed files against it.

    Returns the problems found; an empty list means the check passed. Never raises for bad
    input: anything unexpected is itself a problem (fail closed).
    """
    try:
        pinned = PinnedKey.from_file(Path(public_key_path), key_id)
        data = Path(manifest_path).read_bytes()
        if len(data) > MAX_MANIFEST_BYTES:
            return [f"{manifest_path}: larger than {MAX_MANIFEST_BYTES} bytes"]
        verify_blob(pinned, data, Path(signature_path).read_bytes())
        expected = _parse(data)
    except SignatureError as exc:
        return [f"release manifest signature refused: {exc}"]
    except (OSError, ValueError) as exc:
        return [f"release manifest unusable: {exc}"]
    try:
        return _cap(compare_installed(expected, path))
    except Exception as exc:  # fail closed: an error while checking is a failed check
        return [f"release check failed: {type(exc).__name__}: {exc}"]


def enforce_release(manifest_path: Path, signature_path: Path, public_key_path: Path,
                    key_id: str | None = None) -> None:
    """For the proxy at start: raise ConfigError (refuse to serve) if the check finds anything."""
    problems = check_release(manifest_path, signature_path, public_key_path, key_id=key_id)
    if problems:
        raise ConfigError(["release integrity check failed (refusing to serve):", *problems])


def records_check(path: list[str] | None = None) -> list[str]:
    problems: list[str] = []
    for _, dist in sorted(swqos_distributions(path).items()):
        problems += record_problems(dist)
    return _cap(problems)


# --- command line ---------------------------------------------------------------------------


def cmd_verify_release(args: argparse.Namespace) -> int:
    if args.records_only:
        problems = records_check()
    elif args.manifest and args.signature and args.public_key:
        problems = check_release(args.manifest, args.signature, args.public_key, key_id=args.key_id)
    else:
        print("error: give --manifest, --signature and --public-key (or --records-only)", file=sys.stderr)
        return 2
    for p in problems:
        print(f"MISMATCH {p}")
    if problems:
        print(f"release verification FAILED: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    names = ", ".join(f"{n} {d.version}" for n, d in sorted(swqos_distributions().items()))
    print(f"release verification OK: {names}")
    return 0


def cmd_manifest_create(args: argparse.Namespace) -> int:
    from swqos_core import __version__

    out = Path(args.out)
    data = create_release_manifest(args.release or __version__)
    out.write_bytes(data)
    print(f"release manifest: {out} ({len(_parse(data))} distributions)")
    if args.key:
        password = None
        if args.password_env:
            import os

            if args.password_env not in os.environ:
                print(f"error: environment variable {args.password_env} is not set", file=sys.stderr)
                return 1
            password = os.environ[args.password_env].encode()
        try:
            key = load_private_key(Path(args.key), password)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        sig = Path(args.out_signature or f"{out}.sig")
        sig.write_bytes(sign_blob(key, data) + b"\n")
        print(f"signature:        {sig}")
    else:
        print(f"sign it with: cosign sign-blob --key cosign.key --output-signature {out}.sig {out}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``verify-release`` and ``release manifest create`` to the ``swqos`` command line."""
    v = subparsers.add_parser("verify-release", help="check installed swqos files against a signed release manifest")
    v.add_argument("--manifest", help="release manifest (JSON)")
    v.add_argument("--signature", help="its signature (base64 DER, cosign sign-blob format)")
    v.add_argument("--public-key", help="pinned release public key (PEM)")
    v.add_argument("--key-id", help="also require this key id (hex SHA-256 of DER SPKI)")
    v.add_argument("--records-only", action="store_true",
                   help="only check installed files against their own RECORD hashes (no signature)")
    v.set_defaults(func=cmd_verify_release)

    r = subparsers.add_parser("release", help="release tooling")
    rsub = r.add_subparsers(dest="release_command", required=True)
    m = rsub.add_parser("manifest", help="release manifests")
    msub = m.add_subparsers(dest="release_manifest_command", required=True)
    c = msub.add_parser("create", help="list installed swqos distributions and their file hashes")
    c.add_argument("--out", required=True)
    c.add_argument("--release", help="release name recorded in the manifest (default: swqos-core's version)")
    c.add_argument("--key", help="also sign it with this PKCS#8 PEM P-256 key")
    c.add_argument("--password-env")
    c.add_argument("--out-signature")
    c.set_defaults(func=cmd_manifest_create)

