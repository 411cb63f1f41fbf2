"""``swqos dev`` and ``swqos demo``."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dev", help="run the local development stack (enclave child + host-proxy on loopback)",
        description="Run the local development stack: generated identity key, self-signed TLS, a development "
                    "token issuer and loose quotas. 'swqos serve --dev [...]' is the same command.")
    p.add_argument("--dev-dir", help="where the stack keeps its keys and configs; an existing dev directory is "
                                     "reused with its keys (default: a new temporary directory)")
    p.add_argument("--listen", help="host-proxy listen address, HOST:PORT (default 127.0.0.1:8443; loopback only "
                                    "unless --dev-public)")
    p.add_argument("--dev-public", action="store_true",
                   help="allow a non-loopback --listen address (the dev issuer and quotas are then reachable)")
    p.set_defaults(func=_dev)

    p = subparsers.add_parser("demo", help="start a dev stack and sign a CertificateVerify through it",
                              description="Start a throwaway dev stack, sign a real CertificateVerify through the "
                                          "public API, verify it, show a refusal and the latency, exit 0.")
    p.set_defaults(func=_demo)


def _dev(args: argparse.Namespace) -> int:
    from swqos_dev.run import run_dev

    return run_dev(args.dev_dir, args.listen, args.dev_public)


def _demo(args: argparse.Namespace) -> int:
    from swqos_dev.demo import run_demo

    return run_demo(args)
