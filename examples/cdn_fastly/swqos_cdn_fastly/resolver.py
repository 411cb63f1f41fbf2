"""The ``fastly`` client-IP resolver: Fastly-Client-IP, edge-gated.

Fastly-Client-IP is **not** protected by Fastly: "if a client sets this header themselves, we
will use it". It names the real client only when your Fastly service overwrites it on the
first hop. The resolver therefore refuses to start until the operator states that the service
does (``client_ip_overwritten_by_service = true``), and the README gives the VCL.
"""

from __future__ import annotations

from dataclasses import dataclass

from swqos_cdn import EdgeResolver, EdgeSettings
from swqos_cdn_fastly.ranges import PROVIDER
from swqos_core.errors import ConfigError
from swqos_core.layers import BuildContext, RequestHead
from swqos_core.net import IPAddress

HEADER = "fastly-client-ip"


@dataclass
class FastlySettings(EdgeSettings):
    """``[layers.client_ip.fastly]`` (plus the common keys of EdgeSettings)."""

    #: Must be true: your Fastly service sets Fastly-Client-IP = client.ip on the first hop
    #: (otherwise any viewer chooses its own address).
    client_ip_overwritten_by_service: bool = False


class FastlyResolver(EdgeResolver):
    def __init__(self, settings: FastlySettings, ctx: BuildContext) -> None:
        if not settings.client_ip_overwritten_by_service:
            raise ConfigError(
                "client_ip_overwritten_by_service must be true: Fastly passes a viewer's own "
                "Fastly-Client-IP through unless your service overwrites it (see the README's VCL)")
        super().__init__(settings, PROVIDER, name=ctx.name, logger=ctx.logger)

    def client_ip(self, head: RequestHead) -> IPAddress:
        return self.parse_address(self.require_header(head, HEADER), HEADER)


def build(settings: FastlySettings, ctx: BuildContext) -> FastlyResolver:
    return FastlyResolver(settings, ctx)
