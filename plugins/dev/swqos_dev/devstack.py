"""The files of a development stack: one directory holding every key, certificate and config.

:func:`prepare` generates (or, for a directory it made before, reuses) the identity key, a
self-signed CA and TLS certificate and both configs. What the plugins need (a token issuer,
loose quotas, a payload matcher) comes from their ``swqos_dev_defaults`` hookimpls, merged into
the configs; nothing here names a plugin.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import logging
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
import tomli_w

from swqos_core import plugins
from swqos_core.files import write_atomic, write_private_file
from swqos_core.identity import generate_in_child, to_base58
from swqos_dev.contribution import DevContribution
from swqos_dev.tls import make_tls, needs_renewal

log = logging.getLogger("swqos.dev")

#: Written first into a directory the dev stack creates; only a directory holding it is reused.
MARKER = ".swqos-dev"

#: Handle → file name of the files the dev stack itself owns (plugins add theirs).
FILES = {
    "config": "config.toml",
    "enclave_config": "enclave.toml",
    "ca": "ca.pem",
    "tls_cert": "tls.crt",
    "tls_key": "tls.key",
    "identity": "identity.json",
    "identity_pub": "identity.pub",
}


class DevDirError(Exception):
    """The directory cannot hold a dev stack (not one of ours, in use, incomplete). One line."""


@dataclass(frozen=True)
class DevDir:
    """A dev stack's directory. ``dev.config``, ``dev.ca``, … and every plugin file handle
    (``dev.issuer_key`` from auth_jwt) are paths inside ``root``."""

    root: Path
    #: (plugin name, contribution), sorted by plugin name; filled by :func:`prepare`.
    contributions: tuple[tuple[str, DevContribution], ...] = field(default=(), compare=False, repr=False)

    def __getattr__(self, name: str) -> Path:
        if name.startswith("_") or name in ("root", "contributions"):
            raise AttributeError(name)
        if name in FILES:
            return self.root / FILES[name]
        for _, contribution in self.contributions:
            if name in contribution.files:
                return self.root / contribution.files[name].name
        raise AttributeError(name)

    @property
    def socket(self) -> Path:
        return self.root / "enclave.sock"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    def identity_b58(self) -> str:
        return self.identity_pub.read_text().strip()

    def audience(self) -> str:
        return f"validator:{self.identity_b58()}"


# --- the directory ----------------------------------------------------------------------------


def claim(root: Path) -> bool:
    """Make ``root`` a dev directory, or check it is one. Returns True when it already was.

    A missing or empty directory is created 0700 and marked; a marked one is reused; anything
    else is refused, so a mistyped ``--dev-dir`` never writes keys into someone's project.
    """
    if root.exists() and not root.is_dir():
        raise DevDirError(f"{root} is not a directory")
    if (root / MARKER).is_file():
        return True
    if root.is_dir() and any(root.iterdir()):
        raise DevDirError(f"{root} is not empty and is not a dev stack directory (no {MARKER} file); "
                          "give a new or empty directory")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    (root / MARKER).write_text("swqos development stack: throwaway keys, never for production\n")
    return False


def _socket_in_use(path: Path) -> bool:
    if not path.exists():
        return False
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


# --- contributions ----------------------------------------------------------------------------


def required_plugins() -> set[str]:
    """Entry-point names of the plugins swqos-dev depends on (from its own metadata)."""
    try:
        requires = importlib.metadata.requires("swqos-dev") or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    wanted = {_normalize(re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0]) for r in requires}
    names = set()
    for name, eps in plugins.installed_entry_points().items():
        dists = {_normalize(getattr(ep.dist, "name", "") or "") for ep in eps}
        if dists & wanted:
            names.add(name)
    return names


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def load_plugins() -> pluggy.PluginManager:
    """Every installed plugin, so any of them may contribute. One that fails to load is a warning,
    unless the dev stack depends on it (then nothing starts)."""
    pm, loaded, problems = plugins.load_plugins(None)
    missing = required_plugins() - {p.name for p in loaded}
    if missing:
        about = [p for p in problems if any(f"'{m}'" in p for m in missing)]
        raise DevDirError("; ".join(about) or f"the dev stack needs the plugins {', '.join(sorted(missing))}")
    for problem in problems:
        log.warning("ignoring a plugin the dev stack does not need: %s", problem)
    return pm


def collect_contributions(dev: DevDir, pm: pluggy.PluginManager | None = None) -> tuple[tuple[str, DevContribution], ...]:
    """Every installed plugin's ``swqos_dev_defaults``, called plugin by plugin."""
    if pm is None:
        pm = load_plugins()
    found: list[tuple[str, DevContribution]] = []
    for name, result, exc in plugins.call_each(pm, "swqos_dev_defaults", dev_dir=dev):
        if exc is not None:
            raise DevDirError(f"plugin {name!r}: swqos_dev_defaults failed: {type(exc).__name__}: {exc}")
        if result is None:
            continue
        if not isinstance(result, DevContribution):
            raise DevDirError(f"plugin {name!r}: swqos_dev_defaults returned {type(result).__name__}, "
                              "not a DevContribution")
        found.append((name, result))
    found.sort(key=lambda item: item[0])
    handles: dict[str, str] = {h: "the dev stack" for h in (*FILES, "socket", "marker")}
    names: dict[str, str] = {v: "the dev stack" for v in (*FILES.values(), MARKER, "enclave.sock", "enclave.log")}
    for owner, contribution in found:
        for handle, f in contribution.files.items():
            if "/" in f.name or f.name in ("", ".", ".."):
                raise DevDirError(f"plugin {owner!r}: dev file {f.name!r} must be a plain file name")
            for table, key, value in ((handles, handle, owner), (names, f.name, owner)):
                if key in table and table[key] != value:
                    raise DevDirError(f"dev file {key!r} is contributed twice: by {table[key]} and by {value}")
                table[key] = value
    minters = [owner for owner, c in found if c.mint_token is not None]
    if len(minters) > 1:
        raise DevDirError(f"two plugins mint dev tokens: {minters[0]!r} and {minters[1]!r}")
    return tuple(found)


def merge_table(into: dict[str, Any], add: Mapping[str, Any], owner: str, owners: dict[str, str], path: str = "") -> None:
    """Merge ``add`` into ``into``: tables key by key, lists concatenated (no repeats), and one
    scalar set to two values is an error naming both owners."""
    for key, value in add.items():
        where = f"{path}.{key}" if path else key
        if isinstance(value, Mapping):
            current = into.setdefault(key, {})
            if not isinstance(current, dict):
                raise DevDirError(f"dev config {where}: a table from {owner}, a value from {owners.get(where, '?')}")
            merge_table(current, value, owner, owners, where)
        elif isinstance(value, list):
            current = into.setdefault(key, [])
            if not isinstance(current, list):
                raise DevDirError(f"dev config {where}: a list from {owner}, a value from {owners.get(where, '?')}")
            current.extend(copy.deepcopy(v) for v in value if v not in current)
        elif key in into and into[key] != value:
            raise DevDirError(f"dev config {where} is set twice: by {owners.get(where, 'the dev stack')} "
                              f"and by {owner}")
        else:
            into[key] = copy.deepcopy(value)
            owners[where] = owner


def _merged(base: dict[str, Any], dev: DevDir, part: str, without: Iterable[str]) -> dict[str, Any]:
    skip = set(without)
    owners: dict[str, str] = {}
    for owner, contribution in dev.contributions:
        if owner not in skip:
            merge_table(base, getattr(contribution, part), f"plugin {owner!r}", owners)
    return base


def proxy_config(dev: DevDir, listen: str, *, without: Iterable[str] = ()) -> dict[str, Any]:
    """The dev host-proxy config; ``without`` leaves those plugins' dev defaults out (a test that
    brings its own rate limiter passes ``without=["ratelimit"]``)."""
    base: dict[str, Any] = {
        "swqos": {"plugins": []},
        "proxy": {
            "listen": listen,
            "tls_cert": str(dev.tls_cert),
            "tls_key": str(dev.tls_key),
            "enclave": f"unix://{dev.socket}",
        },
        # The kernel's built-ins: the TCP peer is the client address, the request size limits.
        "pipeline": {"client_ip": ["peer"], "validate": ["limits"]},
        "layers": {},
    }
    return _merged(base, dev, "proxy", without)


def enclave_config(dev: DevDir, *, without: Iterable[str] = ()) -> dict[str, Any]:
    """The dev enclave config: the identity key from a file, Ed25519, plus the plugins' tables."""
    base: dict[str, Any] = {
        "swqos": {"plugins": []},
        "enclave": {"listen": f"unix://{dev.socket}", "expected_public_key": dev.identity_b58()},
        "pipeline": {"key_provider": "file", "signer": "ed25519"},
        "layers": {"key_provider": {"file": {"path": str(dev.identity)}}},
    }
    return _merged(base, dev, "enclave", without)


def banner_lines(dev: DevDir) -> list[str]:
    return [c.banner for _, c in dev.contributions if c.banner]


def mint_dev_token(dev: DevDir, sub: str, *, ttl: int = 300, **claims: Any) -> str:
    """A trader credential the dev stack's authenticator accepts (auth_jwt: an ES256 JWT)."""
    for _, contribution in dev.contributions:
        if contribution.mint_token is not None:
            return contribution.mint_token(sub, ttl, claims)
    raise DevDirError("no installed plugin mints dev tokens: install swqos-auth-jwt")


def write_toml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(tomli_w.dumps(data))


def _write_files(dev: DevDir) -> None:
    for _, contribution in dev.contributions:
        for f in contribution.files.values():
            path = dev.root / f.name
            if f.private and path.exists():
                continue  # a key: kept, so what was minted from it stays valid
            if f.private:
                write_private_file(path, f.content)
            else:
                write_atomic(path, f.content, mode=0o644)


def prepare(root: Path, listen: str = "127.0.0.1:0", *, pm: pluggy.PluginManager | None = None) -> DevDir:
    """Create, or reuse, every file of a dev stack in ``root``.

    A new or empty directory gets fresh keys. A directory made by an earlier ``prepare`` keeps its
    identity key, CA and plugin keys (a JWT issuer key, so earlier tokens stay valid); the configs
    are rewritten for ``listen``. Anything else raises :class:`DevDirError`.
    """
    root = Path(root)
    reused = claim(root)
    dev = DevDir(root.resolve())
    if reused and _socket_in_use(dev.socket):
        raise DevDirError(f"{dev.root} is in use: a dev stack is running on {dev.socket}")
    with contextlib.suppress(FileNotFoundError):
        dev.socket.unlink()  # stale, from a stack that was killed
    if not dev.identity.exists():
        if dev.identity_pub.exists():
            raise DevDirError(f"{dev.root}: identity.pub without identity.json; give a new directory")
        public = generate_in_child(dev.identity)  # the key never enters this (the proxy's) process
        dev.identity_pub.write_text(to_base58(public) + "\n")
    elif not dev.identity_pub.exists():
        raise DevDirError(f"{dev.root}: identity.json without identity.pub; give a new directory")
    if not (dev.ca.exists() and dev.tls_key.exists()) or needs_renewal(dev.tls_cert):
        make_tls(dev.ca, dev.tls_cert, dev.tls_key)
    dev = DevDir(dev.root, collect_contributions(dev, pm))
    _write_files(dev)
    write_toml(dev.config, proxy_config(dev, listen))
    write_toml(dev.enclave_config, enclave_config(dev))
    os.chmod(dev.root, 0o700)
    return dev
