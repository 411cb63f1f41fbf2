"""``swqos admin ...``: drive the admin API of a running host-proxy."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "unix:///run/swqos/admin.sock"
TOKEN_ENV = "SWQOS_ADMIN_TOKEN"  # noqa: S105 (the name of a variable, not a secret)
URL_ENV = "SWQOS_ADMIN_URL"

DESCRIPTION = f"""\
Operate a running host-proxy through its admin API.

The admin token is read from --token-file or ${TOKEN_ENV}, never from the command line
(argv is visible to every user through ps). The address is --url, ${URL_ENV}, the
[layers.service.admin] listen of --config, or {DEFAULT_URL}.

Every operation the proxy serves, including those of plugins, is listed by
"swqos admin operations" and can be called with "swqos admin call NAME key=value ...".
"""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot connect to the admin socket {self.socket_path}: "
                                     f"{exc.strerror or exc}") from None
        self.sock = sock


@dataclass
class Target:
    url: str
    token: str | None = None
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    timeout: float = 10.0

    def connection(self) -> http.client.HTTPConnection:
        if self.url.startswith("unix://"):
            path = self.url[len("unix://"):]
            if not path.startswith("/"):
                raise ValueError(f"a unix admin URL needs an absolute path (unix:///run/x.sock), got {self.url!r}")
            return _UnixConnection(path, self.timeout)
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "http":
            return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=self.timeout)
        if parts.scheme == "https":
            ctx = ssl.create_default_context(cafile=str(self.cacert) if self.cacert else None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            if self.cert:
                ctx.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
            return http.client.HTTPSConnection(parts.hostname or "127.0.0.1", parts.port or 443,
                                               timeout=self.timeout, context=ctx)
        raise ValueError(f"admin URL must be unix:///path, http://host:port or https://host:port, got {self.url!r}")


def request(target: Target, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One admin API call; returns (HTTP status, decoded JSON or text)."""
    conn = target.connection()
    headers = {"Host": "swqos-admin"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    data = None
    if body is not None or method == "POST":
        data = json.dumps(body or {}).encode()
        headers["Content-Type"] = "application/json"
    try:
        try:
            conn.request(method, path, body=data, headers=headers)
        except ConnectionRefusedError as exc:
            raise OSError(exc.errno, f"cannot connect to {target.url}: {exc.strerror}") from None
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    if resp.getheader("Content-Type", "").startswith("application/json"):
        return resp.status, json.loads(raw)
    return resp.status, raw.decode("utf-8", "replace")


def _quota(text: str) -> dict[str, Any]:
    """``COUNT[/PERIOD[/BURST]]`` → ``{count, period, burst}``."""
    parts = text.split("/")
    if not 1 <= len(parts) <= 3:
        raise argparse.ArgumentTypeError("expected COUNT[/PERIOD_SECONDS[/BURST]], e.g. 60/60/16")
    try:
        out: dict[str, Any] = {"count": float(parts[0])}
        if len(parts) > 1:
            out["period"] = float(parts[1])
        if len(parts) > 2:
            out["burst"] = int(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers: COUNT[/PERIOD_SECONDS[/BURST]]") from None
    return out


def _param(text: str) -> tuple[str, Any]:
    """``key=value``; the value is JSON when it parses as JSON (numbers, true, lists), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    admin = subparsers.add_parser("admin", help="operate a running host-proxy through its admin API",
                                  description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    admin.add_argument("--url", help=f"admin address (default ${URL_ENV}, the --config's [layers.service.admin] "
                                     f"listen, or {DEFAULT_URL})")
    admin.add_argument("--config", type=Path, help="host-proxy TOML to read [layers.service.admin] from")
    admin.add_argument("--token-file", type=Path, help=f"file holding the admin API token (default ${TOKEN_ENV})")
    admin.add_argument("--cacert", type=Path, help="CA that signed the admin listener's certificate (https)")
    admin.add_argument("--cert", type=Path, help="client certificate for mutual TLS")
    admin.add_argument("--key", type=Path, help="client certificate key for mutual TLS")
    sub = admin.add_subparsers(dest="admin_command", metavar="OPERATION")
    sub.required = True

    def op(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=run)
        return p

    op("status", "version, identity, enclave, signature counts, halts, drain, plugins")
    op("operations", "list every operation this proxy serves (its plugins' included)")
    p = op("call", "call any operation: swqos admin call NAME key=value ...")
    p.add_argument("operation")
    p.add_argument("params", nargs="*", type=_param, metavar="KEY=VALUE")
    p.add_argument("--get", action="store_true", help="send a GET (operations that change nothing)")
    op("trader", "what this proxy and its plugins know about one trader").add_argument("sub")
    op("drain", "stop accepting new signing requests (health turns NOT_SERVING)")
    op("undrain", "accept signing requests again")
    op("metrics", "print the Prometheus metrics")
    # Shortcuts for the first-party plugins' operations (auth_jwt, ratelimit, the CDN plugins); each
    # is one "call" with friendlier arguments, and fails like any unknown operation without them.
    p = op("revoke-trader", "refuse every token of a trader (sub) from the next request on")
    p.add_argument("sub")
    p.add_argument("--force", action="store_true", help="even if this proxy has never seen the trader")
    op("restore-trader", "lift an admin revocation of a trader").add_argument("sub")
    op("revoke-token", "refuse one token (jti) from the next request on").add_argument("jti")
    op("restore-token", "lift an admin revocation of a token").add_argument("jti")
    p = op("allowlist", "set (replace) a trader's IP allowlist; --clear drops the admin override")
    p.add_argument("sub")
    p.add_argument("cidrs", nargs="*", metavar="CIDR")
    p.add_argument("--clear", action="store_true")
    p.add_argument("--force", action="store_true", help="even if this proxy has never seen the trader")
    p = op("quota", "set a trader's quotas (COUNT[/PERIOD[/BURST]]); --clear drops the override")
    p.add_argument("sub")
    p.add_argument("--rate", type=_quota, help="short-window quota, e.g. 120/60/32")
    p.add_argument("--sustained", type=_quota, help="long-window quota, e.g. 2400/3600/600")
    p.add_argument("--clear", action="store_true")
    p.add_argument("--force", action="store_true", help="even if this proxy has never seen the trader")
    op("reload-cdn", "fetch the CDN providers' edge ranges now")


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    if args.config:
        from swqos_core import config

        cfg = config.load(args.config, process="proxy")
        admin = cfg.layers.get("service", {}).get("admin")
        if admin is None:
            raise ValueError(f"{args.config} has no [layers.service.admin] table")
        listen = str(admin.get("listen", "127.0.0.1:9443"))
        if listen.startswith("unix://"):
            return listen
        return f"{'https' if admin.get('tls_cert') else 'http'}://{listen}"
    return DEFAULT_URL


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        return args.token_file.read_text().strip()
    return os.environ.get(TOKEN_ENV) or None


def _call(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    c = args.admin_command
    if c in ("status", "operations"):
        return "GET", f"/v1/{c}", None
    if c == "metrics":
        return "GET", "/metrics", None
    if c == "call":
        params = dict(args.params)
        if len(params) != len(args.params):
            raise ValueError("a parameter is given twice")
        if args.get:
            return "GET", f"/v1/{args.operation}?{urllib.parse.urlencode(params)}" if params else \
                f"/v1/{args.operation}", None
        return "POST", f"/v1/{args.operation}", params
    if c in ("trader", "restore-trader"):
        return "POST", f"/v1/{c}", {"sub": args.sub}
    if c == "revoke-trader":
        return "POST", "/v1/revoke-trader", {"sub": args.sub, "force": args.force}
    if c in ("revoke-token", "restore-token"):
        return "POST", f"/v1/{c}", {"jti": args.jti}
    if c == "allowlist":
        if args.clear == bool(args.cidrs):
            raise ValueError("give CIDRs to set the allowlist, or --clear (not both)")
        return "POST", "/v1/set-allowlist", {"sub": args.sub, "cidrs": None if args.clear else args.cidrs,
                                             "force": args.force}
    if c == "quota":
        if args.clear:
            if args.rate or args.sustained:
                raise ValueError("--clear takes no --rate/--sustained")
            return "POST", "/v1/clear-quota", {"sub": args.sub}
        body: dict[str, Any] = {"sub": args.sub, "force": args.force}
        if args.rate:
            body["rate"] = args.rate
        if args.sustained:
            body["sustained"] = args.sustained
        return "POST", "/v1/set-quota", body
    return "POST", f"/v1/{c}", {}


def run(args: argparse.Namespace) -> int:
    try:
        method, path, body = _call(args)
        target = Target(_url(args), _token(args), args.cacert, args.cert, args.key)
        status, doc = request(target, method, path, body)
    except (ValueError, OSError, ssl.SSLError, http.client.HTTPException) as exc:
        print(f"swqos admin: {exc}", file=sys.stderr)
        return 2
    if isinstance(doc, str):
        print(doc, end="" if doc.endswith("\n") else "\n")
    elif status == 200:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(f"swqos admin: {status}: {doc.get('error', doc)}", file=sys.stderr)
    return 0 if status == 200 else 1


__all__ = ["Target", "add_commands", "request", "run"]
