"""Hook implementations of swqos-cdn-cloudfront."""

from swqos_cdn_cloudfront.ranges import PROVIDER
from swqos_cdn_cloudfront.resolver import CloudFrontSettings, build
from swqos_core import hookimpl
from swqos_core.cdn import add_cdn_provider


@hookimpl
def swqos_register_client_ip_resolvers(register):
    register("cloudfront", build, CloudFrontSettings,
             description="CloudFront-Viewer-Address, believed only from CloudFront origin-facing servers")


@hookimpl
def swqos_add_commands(subparsers):
    add_cdn_provider(subparsers, PROVIDER)
