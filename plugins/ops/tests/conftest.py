"""Fixtures of the ops tests: an admin token store, and in-process fake layers as a plugin object."""

from __future__ import annotations

from pathlib import Path

import pytest

from swqos_auth_jwt.api_tokens import create_token
from swqos_core import hookimpl
from swqos_core.errors import permission_denied, resource_exhausted
from swqos_core.extensions import AdminOperation
from swqos_core.layers import ClientAddress, Principal, RequestHead
from swqos_core.net import parse_ip

#: The client address the fake CDN attributes requests to once its ranges are (re)loaded.
EDGE_CLIENT = "198.51.100.7"


@pytest.fixture
def admin_store(tmp_path: Path) -> tuple[Path, str]:
    """An Argon2id admin token store with one admin token: (store path, token)."""
    store = tmp_path / "admin-tokens.json"
    token, _ = create_token(store, "ops-admin", "admin")
    return store, token


class FakeCdn:
    """Before a reload: decides nothing (the peer fallback applies). After: every request comes from
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


class OpsFakes:
    """Test-only (insecure) layers, registered as one in-process plugin."""

    SWQOS_PLUGIN_NAME = "ops_fakes"

    @hookimpl
    def swqos_register_client_ip_resolvers(self, register):
        register("fake_cdn", lambda s, ctx: FakeCdn(), insecure=True, description="ops tests")

    @hookimpl
    def swqos_register_rate_limiters(self, register):
        register("fake_limit", lambda s, ctx: FakeLimiter(), insecure=True, description="ops tests")

    @hookimpl
    def swqos_register_authenticators(self, register):
        register("fake_probe", lambda s, ctx: ProbeAuth(), insecure=True, description="ops tests")

    @hookimpl
    def swqos_register_admin_operations(self, app, register):
        cdns = [obj for _, obj in app.layers.get("client_ip", []) if isinstance(obj, FakeCdn)]

        async def reload(params, actor):
            for cdn in cdns:
                cdn.reloads += 1
            return {"changed": bool(cdns)}

        register(AdminOperation("reload-fake-cdn", reload, "pretend to fetch new CDN ranges"))


@pytest.fixture
def ops_fakes() -> OpsFakes:
    return OpsFakes()
