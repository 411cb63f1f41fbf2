"""``swqos state show | export | import``: look at, back up and move the state of a store.

Each command reads the host-proxy's config (``--config``), builds only its ``[pipeline] store``
and talks to it directly: a sqlite file on this host (safe while the proxy runs: WAL, and the
running proxy picks imported records up within one sync interval) or the fleet's Redis.

``import`` validates the whole document first (format, version, every field): unknown fields or a
version from the future are refused and nothing is written. Imported policy records keep their
actor and are re-versioned by the target store; bans keep their remaining time. GCRA cells are
not exported: they are seconds of rate-limit history, not state worth moving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from swqos_core import config, plugins, schema
from swqos_core.errors import ConfigError
from swqos_core.layers import BuildContext
from swqos_core.store import MemoryStateStore, StateStore
from swqos_state.sync import check_export

#: Largest import document read (bytes).
MAX_IMPORT_BYTES = 64 * 1024 * 1024


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("state", help="show, export or import the state store (revocations, bans, quotas)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the host-proxy TOML file whose [pipeline] store to use")
    sub = p.add_subparsers(dest="state_command", metavar="SUBCOMMAND", required=True)
    s = sub.add_parser("show", help="summary: records per namespace, live bans, health")
    s.add_argument("--records", action="store_true", help="also print every policy record")
    s.set_defaults(func=run_show)
    e = sub.add_parser("export", help="write the policy records and live bans as JSON")
    e.add_argument("--output", "-o", help="file to write (default: standard output); created 0600")
    e.set_defaults(func=run_export)
    i = sub.add_parser("import", help="write an export document into the store (validated first)")
    i.add_argument("file", help="a document written by `swqos state export`")
    i.add_argument("--actor", default="cli:state-import", help="actor recorded for records without one")
    i.set_defaults(func=run_import)


def open_store(config_path: str) -> StateStore:
    """Build the config's store alone (no other layer), as startup would. Raises ConfigError."""
    cfg = config.load(config_path, process="proxy")
    pm, loaded, problems = plugins.load_plugins(cfg.core.plugins)
    registry = plugins.collect_registrations(pm, loaded)
    problems += registry.problems
    name = cfg.pipeline.store
    reg = registry.entries["store"].get(name)
    if reg is None:
        have = ", ".join(registry.names("store")) or "none"
        raise ConfigError([*problems, f"[pipeline] store: unknown store {name!r} (available: {have})"])
    settings = None
    if reg.config is not None:
        raw = cfg.layers.get("store", {}).get(name, {})
        settings = schema.build(reg.config, raw, where=f"[layers.store.{name}]", base_dir=cfg.base_dir,
                                problems=problems)
    if problems:
        raise ConfigError(problems)
    ctx = BuildContext(name=name, kind="store", process="cli", config_dir=cfg.base_dir,
                       logger=logging.getLogger(f"swqos.store.{name}"))
    store = reg.factory(settings, ctx)
    if isinstance(store, MemoryStateStore):
        raise ConfigError(f"{config_path}: [pipeline] store is 'memory': its state lives only inside the running "
                          "proxy, there is nothing to show, export or import (choose sqlite or redis)")
    return store


def _run(args: argparse.Namespace, work) -> int:
    try:
        store = open_store(args.config)
    except ConfigError as exc:
        print(f"swqos state: {exc}", file=sys.stderr)
        return 2

    async def go() -> int:
        try:
            await store.start()
        except ConfigError as exc:
            print(f"swqos state: {exc}", file=sys.stderr)
            return 2
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def run_show(args: argparse.Namespace) -> int:
    async def work(store: StateStore) -> int:
        doc = await store.export_state()
        per_ns: dict[str, int] = {}
        for rec in doc["policy"]:
            per_ns[rec["namespace"]] = per_ns.get(rec["namespace"], 0) + 1
        st = store.status()
        out: dict[str, Any] = {"store": store.name, "available": st.available, "detail": st.detail,
                               "policy_records": per_ns, "live_bans": len(doc["bans"])}
        if args.records:
            out["records"] = doc["policy"]
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    return _run(args, work)


def run_export(args: argparse.Namespace) -> int:
    async def work(store: StateStore) -> int:
        text = json.dumps(await store.export_state(), indent=2, sort_keys=True) + "\n"
        if args.output:
            path = Path(args.output)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            print(f"exported to {path}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    return _run(args, work)


def run_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        if path.stat().st_size > MAX_IMPORT_BYTES:
            print(f"swqos state import: {path} is larger than {MAX_IMPORT_BYTES} bytes", file=sys.stderr)
            return 1
        doc = json.loads(path.read_text())
        policy, bans = check_export(doc)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"swqos state import: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # JSONDecodeError is a ValueError
        print(f"swqos state import: {path} refused, nothing written: {exc}", file=sys.stderr)
        return 1

    async def work(store: StateStore) -> int:
        n = await store.import_state(policy, bans, args.actor)
        print(f"imported {len(policy)} policy records and {len(bans)} bans into {store.name}", file=sys.stderr)
        return 0 if n == len(policy) + len(bans) else 1
    return _run(args, work)
