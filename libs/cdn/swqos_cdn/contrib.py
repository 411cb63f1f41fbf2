"""What the CDN kit contributes to a running host-proxy: metrics, the ``reload-cdn`` admin
operation and the ``cdn`` status section, for every edge-gated resolver the config built.

The ``swqos_cdn_*`` names belong to the kit (one owner for every CDN plugin, so a config that
loads two CDN plugins, a standby one say, has no clash). Each covers the layers that are
:class:`~swqos_cdn.resolver.EdgeResolver` instances, found by type, never by method name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pluggy

from swqos_cdn.cli import CdnProviderError, collect_providers
from swqos_cdn.resolver import REFRESH_OUTCOMES, EdgeResolver
from swqos_core.errors import ConfigError
from swqos_core.extensions import Actor, AdminError, AdminOperation, MetricFamily, Sample, StatusReporter
from swqos_core.plugins import App

#: The kit's plugin name (its entry point in ``swqos.plugins``).
PLUGIN_NAME = "cdn"

FAMILIES = (
    MetricFamily("swqos_cdn_ranges", "gauge", "CDN edge networks trusted by each client-IP resolver.",
                 ("layer", "family")),
    MetricFamily("swqos_cdn_ranges_serial", "gauge", "Serial (or fetch time) of the range list in use.", ("layer",)),
    MetricFamily("swqos_cdn_ranges_age_seconds", "gauge", "Seconds since the range list in use was fetched.",
                 ("layer",)),
    MetricFamily("swqos_cdn_refreshes", "counter", "In-process range refreshes by outcome "
                 "(updated, unchanged, refused, failed); a refused or failed one keeps the list.", ("layer", "outcome")),
)


def edge_resolvers(app: App) -> list[tuple[str, EdgeResolver]]:
    """The built client-IP layers that are edge-gated resolvers, with their names."""
    return [(name, obj) for name, obj in app.layers.get("client_ip", []) if isinstance(obj, EdgeResolver)]


class CdnMetrics:
    """A :class:`~swqos_core.extensions.MetricsCollector` over the edge resolvers (read on the loop)."""

    families = FAMILIES

    def __init__(self, resolvers: Sequence[tuple[str, EdgeResolver]]) -> None:
        self.resolvers = tuple(resolvers)

    def collect(self) -> Iterable[Sample]:
        for name, r in self.resolvers:
            snap = r.snapshot  # one read: a concurrent refresh swaps the whole snapshot
            yield "swqos_cdn_ranges", (name, "ipv4"), float(len(snap.ipv4))
            yield "swqos_cdn_ranges", (name, "ipv6"), float(len(snap.ipv6))
            yield "swqos_cdn_ranges_serial", (name,), float(snap.serial)
            age = r.ranges_age()
            if age is not None:
                yield "swqos_cdn_ranges_age_seconds", (name,), age
            for outcome in REFRESH_OUTCOMES:
                yield "swqos_cdn_refreshes", (name, outcome), float(r.refreshes[outcome])


def reload_operation(app: App) -> AdminOperation:
    """``reload-cdn``: fetch every edge resolver's published ranges now; the old list stays on failure."""

    async def reload_cdn(params: Mapping[str, Any], actor: Actor) -> Mapping[str, Any]:
        if params:
            raise AdminError(400, f"reload-cdn takes no parameters (got {', '.join(sorted(params))})")
        resolvers = edge_resolvers(app)
        if not resolvers:
            raise AdminError(501, "reload-cdn: no CDN resolver is selected ([pipeline] client_ip names none of "
                                  "the loaded CDN plugins' resolvers)")
        out: dict[str, Any] = {}
        for name, r in resolvers:
            changed = await r.refresh_now()  # never raises; a failure is logged and counted
            out[name] = {"changed": changed, "ranges": r.describe()}
        return {"resolvers": out}

    return AdminOperation(name="reload-cdn", handler=reload_cdn, mutating=True,
                          description="fetch the CDN providers' edge ranges now (the list in use stays on failure)")


def status_reporter(app: App) -> StatusReporter:
    """The ``cdn`` status section: per resolver, the list in use (source, age, serial, counts).

    Collects the CDN providers first, so two plugins registering one provider name stop startup
    with a message naming both (ConfigError).
    """
    try:
        providers = collect_providers(app.pm)
    except CdnProviderError as exc:
        raise ConfigError(str(exc)) from None
    names = sorted(providers)

    def report() -> Mapping[str, Any]:
        return {"providers": names, "resolvers": {name: r.describe() for name, r in edge_resolvers(app)}}

    return report


def require_kit(pluginmanager: pluggy.PluginManager) -> None:
    """Make sure the kit's ``cdn`` plugin is registered (a CDN plugin's ``swqos_addhooks`` calls it).

    A config may list only ``cdn_cloudflare``; the kit's hook spec, commands and contributions
    must still be there. Blocking ``cdn`` is respected (then the CDN plugin's provider hook has no
    specification, and loading fails naming it).
    """
    from swqos_cdn import plugin as kit

    if pluginmanager.is_registered(kit) or pluginmanager.get_plugin(PLUGIN_NAME) is not None:
        return
    if pluginmanager.is_blocked(PLUGIN_NAME):
        return
    pluginmanager.register(kit, name=PLUGIN_NAME)


__all__ = ["FAMILIES", "PLUGIN_NAME", "CdnMetrics", "edge_resolvers", "reload_operation", "require_kit",
           "status_reporter"]


def config_problems(app: Any, strict: bool) -> list[str]:
    """Strict only: a resolver that lets non-CDN peers or private client addresses through."""
    if not strict:
        return []
    problems = []
    for name, layer in edge_resolvers(app):
        if not layer.settings.require_cdn:
            problems.append(f"[layers.client_ip.{name}] require_cdn = false: a public proxy must refuse "
                            "requests that do not come through the CDN")
        if layer.settings.allow_non_global:
            problems.append(f"[layers.client_ip.{name}] allow_non_global = true is a staging setting: a public "
                            "proxy must refuse private and reserved client addresses")
    return problems
