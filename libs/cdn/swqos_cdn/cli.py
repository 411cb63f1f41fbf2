"""The ``swqos cdn`` command group, shared by every installed CDN plugin."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from swqos_core.cdn.ranges import DEFAULT_STATE_DIR, RangeError, Snapshot, load_best
from swqos_core.cdn.refresh import CdnProvider, refresh
from swqos_core.cdn.render import RENDER_FORMATS, RenderError, render_aws_sg, render_nftables, render_terraform
from swqos_core.files import write_atomic

_REGISTRY_ATTR = "swqos_cdn_providers"


def add_cdn_provider(subparsers: argparse._SubParsersAction, provider: CdnProvider) -> None:
    """Add ``provider`` to ``swqos cdn refresh|render|show``, creating the group on first use.

    Call it from a plugin's ``swqos_add_commands`` hook. Every CDN plugin, first- or
    third-party, calls it; the group is created once and shared.
    """
    cdn = subparsers.choices.get("cdn")
    if cdn is None:
        cdn = build_cdn_parser(subparsers.add_parser(
            "cdn", help="CDN edge ranges: refresh the allow-list, render lockdown rules",
            description="CDN edge ranges: refresh the allow-list, render lockdown rules."))
    registry = getattr(cdn, _REGISTRY_ATTR, None)
    if registry is None:
        raise RuntimeError("a 'cdn' command exists that swqos_core.cdn did not create")
    existing = registry.get(provider.name)
    if existing is not None and existing is not provider:
        raise RuntimeError(f"two plugins register the CDN provider {provider.name!r}")
    registry[provider.name] = provider


def build_cdn_parser(cdn: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Fill ``cdn`` with its sub-commands; providers are looked up when the command runs."""
    registry: dict[str, CdnProvider] = {}
    setattr(cdn, _REGISTRY_ATTR, registry)
    cdn.set_defaults(func=lambda args: (cdn.print_help(), 2)[1])
    sub = cdn.add_subparsers(dest="cdn_command", metavar="{refresh,render,show}")

    p = sub.add_parser("refresh", help="fetch the CDN's published ranges, validate, store atomically")
    p.add_argument("provider", help="CDN name (e.g. cloudflare, cloudfront)")
    p.add_argument("--url", help="fetch from here instead of the provider's published URL")
    p.add_argument("--output", type=Path, help="snapshot file to write (the resolver's ranges_file); "
                   f"default {DEFAULT_STATE_DIR}/<provider>.json")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--ca-file", type=Path, help="CA bundle for the URL (default: system store)")
    p.set_defaults(func=lambda args: _run_refresh(args, registry))

    r = sub.add_parser("render", help="print firewall rules admitting the port from the CDN only")
    r.add_argument("--provider", required=True)
    r.add_argument("--format", required=True, choices=RENDER_FORMATS)
    r.add_argument("--port", type=int, default=443)
    r.add_argument("--ranges-file", type=Path, help="refreshed snapshot to render from (default: the newer of "
                   "the shipped snapshot and the default ranges file)")
    r.add_argument("--group-id", help="aws-sg: security group id to put in the JSON")
    r.add_argument("--prefix-list-id", help="aws-sg: ID of the IPv4 managed prefix list (CloudFront)")
    r.add_argument("--ipv6-prefix-list-id", help="aws-sg: ID of the IPv6 managed prefix list (CloudFront)")
    r.add_argument("--explicit-ranges", action="store_true",
                   help="aws-sg: list the snapshot's CIDRs even where a managed prefix list exists")
    r.set_defaults(func=lambda args: _run_render(args, registry))

    s = sub.add_parser("show", help="print the range list a resolver would start with")
    s.add_argument("provider")
    s.add_argument("--ranges-file", type=Path)
    s.set_defaults(func=lambda args: _run_show(args, registry))
    return cdn


def _provider(registry: dict[str, CdnProvider], name: str) -> CdnProvider | None:
    provider = registry.get(name)
    if provider is None:
        have = ", ".join(sorted(registry)) or "none"
        print(f"swqos cdn: unknown provider {name!r} (installed CDN plugins provide: {have})", file=sys.stderr)
    return provider


def _current(provider: CdnProvider, path: Path | None) -> Snapshot:
    return load_best(provider.shipped(), path if path is not None else provider.default_ranges_file())


def _run_refresh(args: argparse.Namespace, registry: dict[str, CdnProvider]) -> int:
    provider = _provider(registry, args.provider)
    if provider is None:
        return 2
    path: Path = args.output or provider.default_ranges_file()
    try:
        previous = _current(provider, path)
        status, snap = refresh(provider, url=args.url, previous=previous, path=path,
                               timeout=args.timeout, ca_file=args.ca_file)
    except RangeError as exc:
        print(f"swqos cdn refresh {provider.name}: REFUSED, the previous list stays in use: {exc}", file=sys.stderr)
        return 1
    if status == "unchanged":
        print(f"{provider.title} ranges unchanged ({snap.etag or snap.serial}); {path} left as is")
        if not path.exists():  # first run, same list as shipped: still leave a file for the resolver
            write_atomic(path, snap.to_json(), mode=0o644)
    else:
        print(f"{provider.title} ranges updated: {len(snap.ipv4)} IPv4, {len(snap.ipv6)} IPv6 "
              f"({snap.etag or snap.serial}) -> {path}")
    return 0


def _run_render(args: argparse.Namespace, registry: dict[str, CdnProvider]) -> int:
    provider = _provider(registry, args.provider)
    if provider is None:
        return 2
    if not 1 <= args.port <= 65535:
        print("swqos cdn render: --port must be between 1 and 65535", file=sys.stderr)
        return 2
    try:
        snap = _current(provider, args.ranges_file)
        if args.format == "aws-sg":
            ids = {4: args.prefix_list_id, 6: args.ipv6_prefix_list_id}
            ids = {k: v for k, v in ids.items() if v}
            if provider.aws_prefix_lists and not args.explicit_ranges and not ids:
                raise RenderError(_prefix_list_hint(provider))
            for fam, pl in ids.items():
                if not (pl.startswith("pl-") and pl[3:].isalnum() and len(pl) <= 64):
                    raise RenderError(f"--{'ipv6-' if fam == 6 else ''}prefix-list-id {pl!r} is not a prefix-list id")
            text = render_aws_sg(provider, snap, port=args.port, group_id=args.group_id,
                                 prefix_list_ids=None if args.explicit_ranges else ids)
        elif args.format == "terraform":
            text = render_terraform(provider, snap, port=args.port)
        else:
            text = render_nftables(provider, snap, port=args.port)
    except (RangeError, RenderError) as exc:
        print(f"swqos cdn render: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _prefix_list_hint(provider: CdnProvider) -> str:
    lines = [f"{provider.title} is admitted through AWS-managed prefix lists, which are named by ID per "
             "account and region. Look them up and pass them:"]
    for fam, name in provider.aws_prefix_lists:
        flag = "--prefix-list-id" if fam == 4 else "--ipv6-prefix-list-id"
        lines.append(f"  {flag} $(aws ec2 describe-managed-prefix-lists --filters "
                     f"Name=prefix-list-name,Values={name} --query 'PrefixLists[0].PrefixListId' --output text)")
    lines.append("or use --format terraform (looks them up by name), or --explicit-ranges to list the CIDRs.")
    return "\n".join(lines)


def _run_show(args: argparse.Namespace, registry: dict[str, CdnProvider]) -> int:
    provider = _provider(registry, args.provider)
    if provider is None:
        return 2
    try:
        snap = _current(provider, args.ranges_file)
    except RangeError as exc:
        print(f"swqos cdn show: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"provider": snap.provider, "source": snap.source, "fetched_at": snap.fetched_at,
                      "serial": snap.serial, "etag": snap.etag, "ipv4": list(snap.ipv4), "ipv6": list(snap.ipv6)},
                     indent=1))
    return 0


def run_cdn_command(argv: Sequence[str], providers: Iterable[CdnProvider]) -> int:
    """Run ``swqos cdn <argv>`` with the given providers (tests; or a core CLI that prefers to
    collect providers itself instead of through ``swqos_add_commands``)."""
    parser = argparse.ArgumentParser(prog="swqos")
    subparsers = parser.add_subparsers(dest="command")
    for p in providers:
        add_cdn_provider(subparsers, p)
    args = parser.parse_args(["cdn", *argv])
    return int(args.func(args))
