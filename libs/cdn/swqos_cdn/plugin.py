"""Hook implementations of swqos-cdn (plugin ``cdn``): the CDN hook spec, ``swqos cdn``, and the
CDN resolvers' metrics, ``reload-cdn`` and status section."""

from __future__ import annotations

import argparse

import pluggy

from swqos_cdn import contrib, hookspecs
from swqos_cdn.cli import add_cdn_commands, collect_providers
from swqos_core import hookimpl


class CdnCommands:
    """``swqos cdn``, bound to the plugin manager whose plugins name the providers."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    @hookimpl
    def swqos_add_commands(self, subparsers: argparse._SubParsersAction) -> None:
        add_cdn_commands(subparsers, lambda: collect_providers(self.pm))


@hookimpl
def swqos_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(hookspecs)
    pluginmanager.register(CdnCommands(pluginmanager), name=f"{contrib.PLUGIN_NAME}.commands")


@hookimpl
def swqos_register_metrics(app, register):
    register(contrib.CdnMetrics(contrib.edge_resolvers(app)))


@hookimpl
def swqos_register_admin_operations(app, register):
    register(contrib.reload_operation(app))


@hookimpl
def swqos_register_status(app, register):
    register("cdn", contrib.status_reporter(app))


@hookimpl
def swqos_check_config(app, strict):
    """When strict: every CDN resolver requires the CDN and refuses non-global client addresses."""
    return contrib.config_problems(app, strict)
