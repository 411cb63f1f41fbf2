"""Hook implementations of swqos-cdn-fastly."""

from swqos_cdn_fastly.ranges import PROVIDER
from swqos_cdn_fastly.resolver import FastlySettings, build
from swqos_core import hookimpl
from swqos_core.cdn import add_cdn_provider


@hookimpl
def swqos_register_client_ip_resolvers(register):
    register("fastly", build, FastlySettings,
             description="Fastly-Client-IP (overwritten by your service), believed only from Fastly edges")


@hookimpl
def swqos_add_commands(subparsers):
    add_cdn_provider(subparsers, PROVIDER)
