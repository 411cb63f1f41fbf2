"""Hook implementations of swqos-cdn-cloudflare."""

from swqos_cdn_cloudflare.ranges import PROVIDER
from swqos_cdn_cloudflare.resolver import CloudflareSettings, build
from swqos_core import hookimpl
from swqos_core.cdn import add_cdn_provider


@hookimpl
def swqos_register_client_ip_resolvers(register):
    register("cloudflare", build, CloudflareSettings,
             description="CF-Connecting-IP, believed only from Cloudflare edges; refuses non-edge peers")


@hookimpl
def swqos_add_commands(subparsers):
    add_cdn_provider(subparsers, PROVIDER)
