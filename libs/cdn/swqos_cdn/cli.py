"""The ``swqos cdn`` command group, shared by every installed CDN plugin.

The kit's ``cdn`` plugin adds the group (``swqos_add_commands``); the CDNs it knows are those the
loaded plugins register through ``swqos_register_cdn_providers``, collected when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import pluggy

from swqos_cdn.ranges import DEFAULT_STATE_DIR, RangeError, Snapshot, load_best
from swqos_cdn.refresh import CdnProvider, refresh
from swqos_cdn.render import RENDER_FORMATS, RenderError, render_aws_sg, render_nftables, render_terraform
from swqos_core.files import write_atomic
from swqos_core.plugins import each_plugin, installed_entry_points

#: Where the providers come from when a command runs: a mapping, or a callable returning one
#: (it may raise CdnProviderError, e.g. two plugins registering one name).
ProviderSource = Mapping[str, CdnProvider] | Callable[[], Mapping[str, CdnProvider]]


class CdnProviderError(Exception):
    """The installed CDN plugins do not agree (two register one provider name); the message names both."""


def collect_providers(pm: pluggy.PluginManager) -> dict[str, CdnProvider]:
    """Call ``swqos_register_cdn_providers`` plugin by plugin; raise CdnProviderError on a clash.

    Goes through pluggy (one subset caller per plugin, so wrappers and monitoring see the calls)
    and remembers which plugin registered which name, so a clash names both owners.
    """
    if not hasattr(pm.hook, "swqos_register_cdn_providers"):
        return {}
    found: dict[str, tuple[str, CdnProvider]] = {}
    problems: list[str] = []
    for plugin_name, caller in each_plugin(pm, "swqos_register_cdn_providers"):

        def register(provider: CdnProvider, _owner: str = plugin_name) -> None:
            if not isinstance(provider, CdnProvider):
                problems.append(f"{_describe(_owner)}: {type(provider).__name__} is not a swqos_cdn.CdnProvider")
                return
            existing = found.get(provider.name)
            if existing is None:
                found[provider.name] = (_owner, provider)
            elif existing[1] is not provider:
                problems.append(f"CDN provider {provider.name!r} is registered twice: by {_describe(existing[0])} "
                                f"and by {_describe(_owner)}")

        try:
            caller(register=register)
        except Exception as exc:  # named, and nothing runs with a half-collected list
            problems.append(f"{_describe(plugin_name)}: swqos_register_cdn_providers failed: "
                            f"{type(exc).__name__}: {exc}")
    if problems:
        raise CdnProviderError("; ".join(problems))
    return {name: provider for name, (_, provider) in found.items()}


def _describe(plugin_name: str) -> str:
    """``plugin 'x' (dist version)`` when the plugin came from an installed entry point."""
    eps = installed_entry_points().get(plugin_name, [])
    dist = getattr(eps[0], "dist", None) if eps else None
    return f"plugin {plugin_name!r}" + (f" ({dist.metadata['Name']} {dist.version})" if dist is not None else "")


def add_cdn_commands(subparsers: argparse._SubParsersAction, providers: ProviderSource) -> argparse.ArgumentParser:
    """Add the ``swqos cdn`` group; ``providers`` is read when a command runs, not before."""
    cdn = subparsers.add_parser(
        "cdn", help="CDN edge ranges: refresh the allow-list, render lockdown rules",
        description="CDN edge ranges: refresh the allow-list, render lockdown rules.")
    return build_cdn_parser(cdn, providers)


def build_cdn_parser(cdn: argparse.ArgumentParser, providers: ProviderSource) -> argparse.ArgumentParser:
    """Fill ``cdn`` with its sub-commands; providers are looked up when the command runs."""
    def registry() -> Mapping[str, CdnProvider]:
        return providers() if callable(providers) else providers

    cdn.set_defaults(func=lambda args: (cdn.print_help(), 2)[1])
    sub = cdn.add_subparsers(dest="cdn_command", metavar="{refresh,render,show}")

    p = sub.add_parser("refresh", help="fetch the CDN's published ranges, validate, store atomically")
    p.add_argument("provider", help="CDN name (e.g. cloudflare, cloudfront)")
    p.add_argument("--url", help="fetch from here instead of the provider's published URL")
    p.add_argument("--out", type=Path, help="snapshot file to write (the resolver's ranges_file); "
                   f"default {DEFAULT_STATE_DIR}/<provider>.json")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--ca-file", type=Path, help="CA bundle for the URL (default: system store)")
    p.set_defaults(func=lambda args: _guarded(_run_refresh, args, registry))

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
    r.set_defaults(func=lambda args: _guarded(_run_render, args, registry))

    s = sub.add_parser("show", help="print the range list a resolver would start with")
    s.add_argument("provider")
    s.add_argument("--ranges-file", type=Path)
    s.set_defaults(func=lambda args: _guarded(_run_show, args, registry))
    return cdn


def _guarded(run: Callable[[argparse.Namespace, Mapping[str, CdnProvider]], int], args: argparse.Namespace,
             registry: Callable[[], Mapping[str, CdnProvider]]) -> int:
    try:
        providers = registry()
    except CdnProviderError as exc:
        print(f"swqos cdn: {exc}", file=sys.stderr)
        return 2
    return run(args, providers)


def _provider(registry: Mapping[str, CdnProvider], name: str) -> CdnProvider | None:
    provider = registry.get(name)
    if provider is None:
        have = ", ".join(sorted(registry)) or "none"
        print(f"swqos cdn: unknown provider {name!r} (installed CDN plugins provide: {have})", file=sys.stderr)
    return provider


def _current(provider: CdnProvider, path: Path | None) -> Snapshot:
    return load_best(provider.shipped(), path if path is not None else provider.default_ranges_file())


def _run_refresh(args: argparse.Namespace, registry: Mapping[str, CdnProvider]) -> int:
    provider = _provider(registry, args.provider)
    if provider is None:
        return 2
    path: Path = args.out or provider.default_ranges_file()
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


def _run_render(args: argparse.Namespace, registry: Mapping[str, CdnProvider]) -> int:
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


def _run_show(args: argparse.Namespace, registry: Mapping[str, CdnProvider]) -> int:
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


def run_cdn_command(argv: Sequence[str], providers: Iterable[CdnProvider] | pluggy.PluginManager) -> int:
    """Run ``swqos cdn <argv>`` with the given providers, or those a plugin manager's plugins register
    (tests, and embedding the commands elsewhere)."""
    if isinstance(providers, pluggy.PluginManager):
        pm = providers
        source: ProviderSource = lambda: collect_providers(pm)  # noqa: E731
    else:
        source = {}
        for p in providers:
            if source.get(p.name, p) is not p:
                raise CdnProviderError(f"CDN provider {p.name!r} is given twice")
            source[p.name] = p
    parser = argparse.ArgumentParser(prog="swqos")
    add_cdn_commands(parser.add_subparsers(dest="command"), source)
    args = parser.parse_args(["cdn", *argv])
    return int(args.func(args))
