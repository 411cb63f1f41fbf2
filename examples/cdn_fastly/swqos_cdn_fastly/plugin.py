"""Hook implementations of swqos-cdn-fastly."""

from swqos_cdn import require_kit
from swqos_cdn_fastly.ranges import PROVIDER
from swqos_cdn_fastly.resolver import FastlySettings, build
from swqos_core import hookimpl


@hookimpl
def swqos_addhooks(pluginmanager):
    # The CDN kit's plugin brings the provider hook spec, `swqos cdn` and the swqos_cdn_* metrics.
    require_kit(pluginmanager)


@hookimpl
def swqos_register_client_ip_resolvers(register):
    register("fastly", build, FastlySettings,
             description="Fastly-Client-IP (overwritten by your service), believed only from Fastly edges")


@hookimpl
def swqos_register_cdn_providers(register):
    register(PROVIDER)
