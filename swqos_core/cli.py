"""The ``swqos`` command line.

Core commands (``serve``, ``enclave``, ``config``, ``plugins``) import only the
plugins a config names. Any other command comes from a plugin's ``swqos_add_commands`` hook,
so the parser for those is built with every installed plugin loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from swqos_core import __version__, config, plugins, schema, workers
from swqos_core.errors import ConfigError
from swqos_core.workers import WorkerSlot

CORE_COMMANDS = {"serve", "enclave", "config", "plugins"}
log = logging.getLogger("swqos.cli")


def _setup_logging(verbose: bool = False, fmt: str | None = None) -> None:
    from swqos_core import logs  # text or JSON lines (--log-format / $SWQOS_LOG_FORMAT), see docs/operations.md

    logs.setup(fmt, verbose=verbose)


# --- serve ---------------------------------------------------------------------------------
async def _serve_until_stopped(cfg: config.AppConfig, slot: WorkerSlot | None = None) -> None:
    from swqos_core.server import start_proxy

    proxy = await start_proxy(cfg, reuse_port=slot is not None)
    if slot is not None:
        slot.ready(proxy.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.stop()


def cmd_serve(args: argparse.Namespace) -> int:
    if not args.config:
        print("swqos serve: give --config FILE, or --dev for the local development stack", file=sys.stderr)
        return 2
    cfg = config.load(args.config, process="proxy")
    slot = workers.worker_slot(cfg)  # None unless a supervisor started this process
    if slot is None and cfg.settings.workers > 1:
        return workers.supervise(cfg, ["-v"] * args.verbose + (["--log-format", args.log_format] if args.log_format else []))
    lock = None if slot else workers.ListenLock.acquire(cfg.settings.listen)  # exclusive, like a supervisor's
    try:
        asyncio.run(_serve_until_stopped(cfg, slot))
    finally:
        if lock is not None:
            lock.release()
    return 0


def run_dev(argv: list[str]) -> int:
    """``serve --dev`` is the development stack's ``swqos dev`` command, from the swqos-dev distribution."""
    if "dev" not in plugins.installed_entry_points():
        print("swqos serve --dev: the development stack is not installed; pip install swqos-dev", file=sys.stderr)
        return 2
    rest = [a for a in argv if a not in ("serve", "--dev")]
    return main(["dev", *rest])


# --- enclave -------------------------------------------------------------------------------
def cmd_enclave(args: argparse.Namespace) -> int:
    from swqos_core.enclave.child import die_with_parent
    from swqos_core.enclave.signer import run_enclave

    die_with_parent()

    cfg = config.load(args.config, process="enclave")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_enclave(cfg))
    return 0


# --- config check / plugins ----------------------------------------------------------------
def cmd_config_check(args: argparse.Namespace) -> int:
    """Exit 0: valid; 1: invalid (one line per problem); 2: usage (argparse)."""
    from swqos_core.check import check

    report = check(args.file, strict=args.strict)
    for warning in report.warnings:
        print(f"warning: {warning} (an error with --strict)", file=sys.stderr)
    if report.problems:
        print(f"{args.file}: invalid ({len(report.problems)} problem{'s' * (len(report.problems) != 1)})",
              file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    mode = "strict" if report.strict else "not strict: a loopback listener"
    print(f"{args.file}: valid {report.process} configuration ({mode})")
    for kind, names in report.selected.items():
        print(f"  {kind:14} {', '.join(names) or '-'}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    pm, loaded, problems = plugins.load_plugins(None)
    registry = plugins.collect_registrations(pm, loaded)
    for p in loaded:
        print(f"{p.name}  ({p.distribution} {p.version})")
        for kind, regs in registry.entries.items():
            for reg in sorted(regs.values(), key=lambda r: r.name):
                if reg.plugin != p.name:
                    continue
                flag = "  [test only]" if reg.insecure else ""
                print(f"  {kind}: {reg.name}{flag}  {reg.description}")
                if args.verbose:  # nested tables as dotted keys (keys.<name>.public_key)
                    for row in schema.describe(reg.config):
                        allowed = f"  (one of {', '.join(row.allowed)})" if row.allowed else ""
                        print(f"      {row.key}: {row.type} = {row.default}{allowed}")
                        if row.doc:
                            print(f"          {row.doc}")
        hooks = sorted({h.name for h in pm.get_hookcallers(p.module) or []} - set(plugins.HOOK_KINDS))
        if hooks:
            print(f"  hooks: {', '.join(hooks)}")
    for problem in problems + registry.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems or registry.problems else 0


# --- parser --------------------------------------------------------------------------------
def build_parser(with_plugins: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swqos", description="swqos signing proxy")
    parser.add_argument("--version", action="version", version=f"swqos {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=["text", "json"], default=None,
                        help="log lines as text (development) or JSON (production); default $SWQOS_LOG_FORMAT or text")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the host-proxy",
                       description="Run the host-proxy. 'swqos serve --dev [...]' runs 'swqos dev [...]', the "
                                   "local development stack (the swqos-dev distribution).")
    p.add_argument("--config", help="host-proxy TOML file")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("enclave", help="run the enclave signer")
    p.add_argument("--config", required=True, help="enclave TOML file")
    p.set_defaults(func=cmd_enclave)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    c = csub.add_parser("check", help="check a config as startup would, without binding or connecting",
                        description="Check a host-proxy or enclave config: every section, every file it loads, "
                                    "placeholders, and each plugin's own checks. Exit codes: 0 valid, 1 invalid, "
                                    "2 usage.")
    c.add_argument("file", help="the TOML file to check")
    strictness = c.add_mutually_exclusive_group()
    strictness.add_argument("--strict", action="store_true", default=None,
                            help="also refuse unsafe setups of a public proxy (default for a non-loopback listener)")
    strictness.add_argument("--no-strict", dest="strict", action="store_false",
                            help="report those setups as warnings only")
    c.set_defaults(func=cmd_config_check)

    p = sub.add_parser("plugins", help="list installed plugins and what they register")
    p.add_argument("--verbose", action="store_true",
                   help="also list each implementation's settings: type, default, allowed values, meaning "
                        "(all of them, for every section: docs/reference.md)")
    p.set_defaults(func=cmd_plugins)

    if with_plugins:
        pm, _, problems = plugins.load_plugins(None)
        for problem in problems:
            print(f"warning: {problem}", file=sys.stderr)
        pm.hook.swqos_add_commands(subparsers=sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    if first == "serve" and "--dev" in argv:
        return run_dev(argv)
    parser = build_parser(with_plugins=first not in CORE_COMMANDS)
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.log_format)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # an invalid config: exit 1, like config check (2 is for usage errors)
        print(exc.render(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
