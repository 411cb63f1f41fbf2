"""Hook implementations of swqos-cdn-cloudfront."""

from swqos_cdn import require_kit
from swqos_cdn_cloudfront.ranges import PROVIDER
from swqos_cdn_cloudfront.resolver import CloudFrontSettings, build
from swqos_core import hookimpl


@hookimpl
def swqos_addhooks(pluginmanager):
    # The CDN kit's plugin brings the provider hook spec, `swqos cdn` and the swqos_cdn_* metrics.
    require_kit(pluginmanager)


@hookimpl
def swqos_register_client_ip_resolvers(register):
    register("cloudfront", build, CloudFrontSettings,
             description="CloudFront-Viewer-Address, believed only from CloudFront origin-facing servers")


@hookimpl
def swqos_register_cdn_providers(register):
    register(PROVIDER)
