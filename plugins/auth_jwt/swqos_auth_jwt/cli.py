"""``swqos token ...``: mint JWTs (your own issuer's, or a dev stack's) and manage API tokens.

Exit codes: 0 done, 2 anything refused (bad option, unreadable file, nothing to revoke). Every
message about a file names its path.
"""

from __future__ import annotations

import argparse
import datetime
import stat
import sys
from pathlib import Path

from swqos_auth_jwt import api_tokens, issuer
from swqos_auth_jwt.strict import StrictDecodeError

MAX_TTL = 86_400


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    token = subparsers.add_parser("token", help="mint JWTs; create, list and revoke API tokens",
                                  description="Mint ES256 trader JWTs and manage Argon2id API tokens.")
    sub = token.add_subparsers(dest="token_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "issue", help="mint an ES256 JWT with your issuer's key, or with a dev stack's",
        description="Mint an ES256 JWT on stdout. Either with your own issuer (--key, --kid, --issuer, "
                    "--audience: what a [layers.auth.jwt] section with that issuer and the key's public "
                    "half accepts), or with the development issuer of a 'swqos serve --dev' directory "
                    "(--dev-dir).")
    p.add_argument("--key", type=Path, metavar="PEM",
                   help="the issuer's EC P-256 private key, unencrypted PEM, mode 0600 (not with --dev-dir)")
    p.add_argument("--kid", help="key id written into the header; the kid of that key in [layers.auth.jwt.keys]")
    p.add_argument("--issuer", help="the 'iss' claim; [layers.auth.jwt] issuer")
    p.add_argument("--audience", help="the 'aud' claim; [layers.auth.jwt] audience (validator:<identity base58>)")
    p.add_argument("--dev-dir", type=Path, metavar="DIR",
                   help="mint with the dev issuer of a directory written by 'swqos serve --dev' instead")
    p.add_argument("--sub", required=True, help="the trader's subject ('sub' claim)")
    p.add_argument("--ttl", type=int, default=300, metavar="SECONDS",
                   help=f"exp - iat in seconds, 1 to {MAX_TTL} (default 300; the verifier's "
                        "max_lifetime_seconds, 900 by default, must allow it)")
    p.set_defaults(func=run_issue)

    p = sub.add_parser("create", help="create an API token; it is printed once and stored only as a hash")
    p.add_argument("--name", required=True, help="a name for the token (1-128 characters), shown by 'token list'")
    p.add_argument("--store", type=Path, required=True, metavar="FILE",
                   help="token store file (JSON, 0600); created when missing")
    p.add_argument("--role", choices=["trader", "admin"], default="trader",
                   help="what the token may do (default trader)")
    p.add_argument("--ttl", type=int, default=None, metavar="SECONDS",
                   help="seconds until the token expires (default: never)")
    p.set_defaults(func=run_create)

    p = sub.add_parser("list", help="list API tokens (never their secrets)")
    p.add_argument("--store", type=Path, required=True, metavar="FILE", help="an existing token store file")
    p.set_defaults(func=run_list)

    p = sub.add_parser("revoke", help="revoke API tokens by id or name")
    p.add_argument("--store", type=Path, required=True, metavar="FILE", help="an existing token store file")
    p.add_argument("token", metavar="ID_OR_NAME", help="a token id (from 'token list') or a name (revokes all with it)")
    p.set_defaults(func=run_revoke)


def _err(msg: str) -> int:
    print(f"swqos token: {msg}", file=sys.stderr)
    return 2


def _read_issuer_key(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read issuer key {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"issuer key {path} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
    try:
        issuer.load_private_key(data)
    except ValueError:
        raise ValueError(f"issuer key {path} is not an unencrypted EC P-256 private key in PEM") from None
    return data


def run_issue(args: argparse.Namespace) -> int:
    if not (1 <= args.ttl <= MAX_TTL):
        return _err(f"--ttl must be between 1 and {MAX_TTL} seconds")
    own = {"--key": args.key, "--kid": args.kid, "--issuer": args.issuer, "--audience": args.audience}
    given = [flag for flag, value in own.items() if value is not None]
    if args.dev_dir is not None:
        if given:
            return _err(f"--dev-dir mints with the dev issuer; it cannot be combined with {', '.join(given)}")
        try:
            print(issuer.mint_dev(args.dev_dir, args.sub, args.ttl))
        except OSError as exc:
            return _err(f"cannot mint a token from {args.dev_dir}: {exc.filename or args.dev_dir}: {exc.strerror}")
        except ValueError as exc:
            return _err(f"cannot mint a token from {args.dev_dir}: {exc}")
        return 0
    if not given:
        return _err("give --key, --kid, --issuer and --audience (your issuer), or --dev-dir (a dev stack)")
    missing = [flag for flag, value in own.items() if not value]
    if missing:
        return _err(f"minting with your own issuer also needs {', '.join(missing)}")
    if not args.sub:
        return _err("--sub must not be empty")
    try:
        pem = _read_issuer_key(args.key)
    except ValueError as exc:
        return _err(str(exc))
    print(issuer.mint(pem, args.kid, args.issuer, args.audience, args.sub, args.ttl))
    return 0


def _existing_store(path: Path) -> dict[str, api_tokens.TokenRecord]:
    """Read a store that must exist: a typo in --store is an error, not an empty store."""
    if not path.is_file():
        raise ValueError(f"token store {path} does not exist (swqos token create --store {path} creates it)")
    return _read_store(path)


def _read_store(path: Path) -> dict[str, api_tokens.TokenRecord]:
    try:
        return api_tokens.read_store(path)
    except OSError as exc:
        raise ValueError(f"cannot read token store {path}: {exc.strerror}") from None
    except (StrictDecodeError, ValueError) as exc:
        raise ValueError(f"token store {path}: {exc}") from None


def run_create(args: argparse.Namespace) -> int:
    if args.ttl is not None and args.ttl <= 0:
        return _err("--ttl must be positive")
    try:
        _read_store(args.store)  # a broken store is named before anything is written
        token, rec = api_tokens.create_token(args.store, args.name, args.role, args.ttl)
    except OSError as exc:
        return _err(f"cannot write token store {args.store}: {exc.strerror}")
    except ValueError as exc:
        return _err(str(exc))
    print(token)
    print(f"token id {rec.id}, role {rec.role}: this is the only time the token is shown", file=sys.stderr)
    return 0


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_list(args: argparse.Namespace) -> int:
    try:
        records = _existing_store(args.store)
    except ValueError as exc:
        return _err(str(exc))
    print(f"{'ID':16}  {'ROLE':6}  {'CREATED':20}  {'EXPIRES':20}  {'STATE':7}  NAME")
    for r in sorted(records.values(), key=lambda r: r.created_at):
        state = "revoked" if r.revoked else "active"
        print(f"{r.id:16}  {r.role:6}  {_when(r.created_at):20}  {_when(r.expires_at):20}  {state:7}  {r.name}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    try:
        _existing_store(args.store)
        ids = api_tokens.revoke_token(args.store, args.token)
    except OSError as exc:
        return _err(f"cannot write token store {args.store}: {exc.strerror}")
    except ValueError as exc:
        return _err(str(exc))
    if not ids:
        return _err(f"no active token with id or name {args.token!r} in {args.store}")
    for tid in ids:
        print(f"revoked {tid}")
    return 0
