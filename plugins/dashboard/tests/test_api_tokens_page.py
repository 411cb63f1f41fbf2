"""API tokens on the Traders page: listed through auth_jwt's read-only operation, revoked by a form,
refused by the real api_token authenticator from the next request on."""

from __future__ import annotations

from types import SimpleNamespace

import grpc
import pytest

from swqos_auth_jwt.admin_ops import operations_for
from swqos_auth_jwt.api_tokens import ApiTokenAuthenticator, ApiTokenSettings, create_token
from swqos_core.errors import Rejection
from swqos_core.extensions import Actor, AdminError
from swqos_core.layers import ClientAddress, RequestHead
from swqos_core.net import parse_ip
from swqos_core.plugins import Contributions
from swqos_core.state import ServiceState
from swqos_dashboard.dashboard import Dashboard
from swqos_dashboard.settings import DashboardSettings

from .dashboard_helpers import FakeEnclave, RecordingHost
from .test_pages import get, post, session_and_token


@pytest.fixture
def tokens(tmp_path, clock):
    store = tmp_path / "tokens.json"
    alice, _ = create_token(store, "alice", "trader")
    create_token(store, "bob", "trader")
    auth = ApiTokenAuthenticator(ApiTokenSettings(store=store, accept_roles=["trader"]))
    contributions = Contributions()
    app = SimpleNamespace(state=ServiceState("0.1.0"), enclave=FakeEnclave(0), contributions=contributions,
                          layers={"auth": [("api_token", auth)]}, plugins=[])
    for op in operations_for(app):
        contributions.admin_operations[op.name] = ("auth_jwt", op)
    dash = Dashboard(DashboardSettings(), clock)
    dash.bind(app)
    host = RecordingHost(contributions.admin_operations)
    dash.mount("/ui", host)
    return dash, host, auth, alice


async def authenticate(auth, token):
    head = RequestHead(rpc="SignCertificateVerify", peer="ipv4:127.0.0.1:1",
                       metadata=(("authorization", f"Bearer {token}"),))
    try:
        return await auth.authenticate(head, ClientAddress(parse_ip("127.0.0.1"), "peer", head.peer))
    except Rejection as exc:
        return exc


async def test_tokens_are_listed_without_secrets_and_revoked_from_the_page(tokens):
    dash, host, auth, alice = tokens
    alice_id = alice.split("_")[1]
    assert (await authenticate(auth, alice)).subject == "alice"
    session, csrf = await session_and_token(dash)
    html = (await get(dash, "/ui/traders", cookie=session))[2].decode()
    assert 'id="api-tokens"' in html and alice_id in html and "bob" in html
    secret = alice.split("_", 2)[2]  # the whole secret: it may itself hold "_"
    assert secret and secret not in html and "argon2" not in html  # no secret, no hash
    status, _, _ = await post(dash, {"csrf": csrf, "op": "revoke-api-token", "back": "traders", "p.token": alice_id},
                              cookie=session)
    assert status == 303
    assert host.calls[-1][0] == "revoke-api-token"
    refused = await authenticate(auth, alice)  # cached before, revoked now: refused at once
    assert isinstance(refused, Rejection) and refused.code == grpc.StatusCode.UNAUTHENTICATED
    html = (await get(dash, "/ui/traders", cookie=session))[2].decode()
    assert "revoke-api-token: done" in html


async def test_revoking_an_unknown_token_is_a_clear_404(tokens):
    dash = tokens[0]
    op = dash.operations["revoke-api-token"][1]
    with pytest.raises(AdminError) as info:
        await op.handler({"token": "nope"}, Actor("certificate", "op"))
    assert info.value.status == 404 and "nope" in info.value.message
