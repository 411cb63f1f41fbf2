"""``swqos token ...``: mint dev JWTs and manage API tokens."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from swqos_auth_jwt import api_tokens, issuer


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    token = subparsers.add_parser("token", help="mint development JWTs; create, list and revoke API tokens")
    sub = token.add_subparsers(dest="token_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("issue", help="mint an ES256 JWT with the dev issuer key of a --dev directory")
    p.add_argument("--dev-dir", type=Path, required=True, help="directory written by swqos serve --dev")
    p.add_argument("--sub", required=True, help="trader subject")
    p.add_argument("--ttl", type=int, default=300, help="exp - iat in seconds (default 300)")
    p.set_defaults(func=run_issue)

    p = sub.add_parser("create", help="create an API token; it is printed once and stored only as a hash")
    p.add_argument("--name", required=True)
    p.add_argument("--store", type=Path, required=True, help="token store file (JSON, 0600)")
    p.add_argument("--role", choices=["trader", "admin"], default="trader")
    p.add_argument("--ttl", type=int, default=None, help="seconds until the token expires (default: never)")
    p.set_defaults(func=run_create)

    p = sub.add_parser("list", help="list API tokens (never their secrets)")
    p.add_argument("--store", type=Path, required=True)
    p.set_defaults(func=run_list)

    p = sub.add_parser("revoke", help="revoke API tokens by id or name")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("token", metavar="ID_OR_NAME")
    p.set_defaults(func=run_revoke)


def _err(msg: str) -> int:
    print(f"swqos token: {msg}", file=sys.stderr)
    return 2


def run_issue(args: argparse.Namespace) -> int:
    if not (1 <= args.ttl <= 86_400):
        return _err("--ttl must be between 1 and 86400 seconds")
    try:
        print(issuer.mint_dev(args.dev_dir, args.sub, args.ttl))
    except (OSError, ValueError) as exc:
        return _err(f"cannot mint a token from {args.dev_dir}: {exc}")
    return 0


def run_create(args: argparse.Namespace) -> int:
    if args.ttl is not None and args.ttl <= 0:
        return _err("--ttl must be positive")
    try:
        token, rec = api_tokens.create_token(args.store, args.name, args.role, args.ttl)
    except (OSError, ValueError) as exc:
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
        records = api_tokens.read_store(args.store)
    except (OSError, ValueError) as exc:
        return _err(str(exc))
    print(f"{'ID':16}  {'ROLE':6}  {'CREATED':20}  {'EXPIRES':20}  {'STATE':7}  NAME")
    for r in sorted(records.values(), key=lambda r: r.created_at):
        state = "revoked" if r.revoked else "active"
        print(f"{r.id:16}  {r.role:6}  {_when(r.created_at):20}  {_when(r.expires_at):20}  {state:7}  {r.name}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    try:
        ids = api_tokens.revoke_token(args.store, args.token)
    except (OSError, ValueError) as exc:
        return _err(str(exc))
    if not ids:
        return _err(f"no active token with id or name {args.token!r}")
    for tid in ids:
        print(f"revoked {tid}")
    return 0
