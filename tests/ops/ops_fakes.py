"""Small in-process layers for the ops tests, registered as test-only (insecure) implementations.

They stand in where a real plugin cannot be driven from a test: a CDN resolver whose ranges change
on reload without fetching from the internet, a client-IP stage that can be told to refuse, a
limiter that can be told to refuse, and an authenticator that yields a non-trader principal.
"""

from __future__ import annotations

from swqos_core import hookimpl
from swqos_core.errors import permission_denied, resource_exhausted
from swqos_core.layers import ClientAddress, Principal, RequestHead
from swqos_core.net import parse_ip

SWQOS_PLUGIN_NAME = "ops_fakes"

#: The client address the fake CDN attributes requests to once its ranges are (re)loaded.
EDGE_CLIENT = "198.51.100.7"


class FakeCdn:
    """Before reload: decides nothing (the peer fallback applies). After: every request comes from
    EDGE_CLIENT. ``refuse`` makes it refuse like a CDN resolver facing a non-edge peer."""

    def __init__(self) -> None:
        self.reloads = 0
        self.refuse = False

    async def resolve(self, head: RequestHead) -> ClientAddress | None:
        if self.refuse:
            raise permission_denied("peer is not a CDN edge", label="not_edge")
        if self.reloads == 0:
            return None
        return ClientAddress(parse_ip(EDGE_CLIENT), "fake_cdn", head.peer)

    async def refresh_now(self) -> bool:
        self.reloads += 1
        return True

    def describe(self) -> dict[str, object]:
        return {"provider": "fake", "serial": self.reloads, "ipv4": 1, "ipv6": 0}


class FakeLimiter:
    def __init__(self) -> None:
        self.refuse_address = False
        self.refuse_principal = False

    async def check_address(self, head: RequestHead, client: ClientAddress) -> None:
        if self.refuse_address:
            raise resource_exhausted("too many requests from this address", retry_after=1.5, label="fake_address")

    async def check_principal(self, head: RequestHead, principal: Principal, client: ClientAddress) -> None:
        if self.refuse_principal:
            raise resource_exhausted("trader over quota", retry_after=2.0, label="fake_trader")


class ProbeAuth:
    """``x-fake-probe: 1`` → a probe principal (only traders may sign); otherwise not its business."""

    async def authenticate(self, head: RequestHead, client: ClientAddress) -> Principal | None:
        if head.header_values("x-fake-probe"):
            return Principal("probe-1", "probe", "fake_probe")
        return None


@hookimpl
def swqos_register_client_ip_resolvers(register):
    register("fake_cdn", lambda s, ctx: FakeCdn(), insecure=True, description="ops tests")


@hookimpl
def swqos_register_rate_limiters(register):
    register("fake_limit", lambda s, ctx: FakeLimiter(), insecure=True, description="ops tests")


@hookimpl
def swqos_register_authenticators(register):
    register("fake_probe", lambda s, ctx: ProbeAuth(), insecure=True, description="ops tests")
