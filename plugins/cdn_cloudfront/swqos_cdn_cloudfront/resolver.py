"""The ``cloudfront`` client-IP resolver: CloudFront-Viewer-Address or X-Forwarded-For, edge-gated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from swqos_cdn import EdgeResolver, EdgeSettings
from swqos_cdn_cloudfront.ranges import PROVIDER
from swqos_core.layers import BuildContext, RequestHead
from swqos_core.net import IPAddress

VIEWER_ADDRESS = "cloudfront-viewer-address"


@dataclass
class CloudFrontSettings(EdgeSettings):
    """``[layers.client_ip.cloudfront]`` (plus the common keys of EdgeSettings)."""

    #: "viewer-address": CloudFront-Viewer-Address (add it to the origin request policy);
    #: "x-forwarded-for": the right-most entry of X-Forwarded-For that is not a trusted edge.
    client_header: Literal["viewer-address", "x-forwarded-for"] = "viewer-address"


class CloudFrontResolver(EdgeResolver):
    def __init__(self, settings: CloudFrontSettings, ctx: BuildContext) -> None:
        super().__init__(settings, PROVIDER, name=ctx.name, logger=ctx.logger)
        self.client_header = settings.client_header

    def client_ip(self, head: RequestHead) -> IPAddress:
        if self.client_header == "viewer-address":
            return self.parse_address_port(self.require_header(head, VIEWER_ADDRESS), VIEWER_ADDRESS)
        return self.rightmost_untrusted(head, "x-forwarded-for")


def build(settings: CloudFrontSettings, ctx: BuildContext) -> CloudFrontResolver:
    return CloudFrontResolver(settings, ctx)
