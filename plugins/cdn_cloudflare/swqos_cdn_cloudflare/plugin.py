"""Hook implementations of swqos-cdn-cloudflare."""

from swqos_cdn import require_kit
from swqos_cdn_cloudflare.ranges import PROVIDER
from swqos_cdn_cloudflare.resolver import CloudflareSettings, build
from swqos_core import hookimpl


@hookimpl
def swqos_addhooks(pluginmanager):
    # The CDN kit's plugin brings the provider hook spec, `swqos cdn` and the swqos_cdn_* metrics.
    require_kit(pluginmanager)


@hookimpl
def swqos_register_client_ip_resolvers(register):
    register("cloudflare", build, CloudflareSettings,
             description="CF-Connecting-IP, believed only from Cloudflare edges; refuses non-edge peers")


@hookimpl
def swqos_register_cdn_providers(register):
    register(PROVIDER)
