"""Token refresh: the callback runs when the held token is within the margin of its exp."""

from __future__ import annotations

import base64
import json

import pytest

from swqos_client import AsyncSignerClient, SignerClient, TlsTrust, TokenError, TokenSource, token_expiry
from swqos_client import make_client_certificate_verify as mk


def jwt_with(claims: dict) -> str:
    def b64(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'ES256', 'typ': 'JWT'})}.{b64(claims)}.c2ln"


def test_token_expiry_reads_exp_without_verifying() -> None:
    assert token_expiry(jwt_with({"exp": 1234})) == 1234.0
    assert token_expiry(jwt_with({"sub": "x"})) is None
    assert token_expiry(jwt_with({"exp": True})) is None
    assert token_expiry("opaque-api-token") is None
    assert token_expiry("a.!!!.c") is None


def test_refresh_when_within_margin() -> None:
    now = [1000.0]
    issued = iter([jwt_with({"exp": 1100, "n": 2}), jwt_with({"exp": 1200, "n": 3})])
    src = TokenSource(
        jwt_with({"exp": 1080, "n": 1}), refresh=lambda: next(issued), refresh_margin=60, clock=lambda: now[0]
    )
    # 1080 - 60 = 1020 > 1000: keep
    assert token_expiry(src.get()) == 1080 and src.refreshes == 0
    now[0] = 1020.0
    assert token_expiry(src.get()) == 1100 and src.refreshes == 1
    assert token_expiry(src.get()) == 1100 and src.refreshes == 1  # 1100-60 = 1040 > 1020
    now[0] = 1050.0
    assert token_expiry(src.get()) == 1200 and src.refreshes == 2


def test_callback_only_source_fetches_first_token() -> None:
    src = TokenSource(refresh=lambda: "opaque")
    assert src.get() == "opaque" and src.get() == "opaque" and src.refreshes == 1


def test_failing_callback_is_a_token_error_without_secret() -> None:
    def boom() -> str:
        raise RuntimeError("secret-material-xyz")

    src = TokenSource(refresh=boom)
    with pytest.raises(TokenError) as info:
        src.get()
    assert "secret-material-xyz" not in str(info.value)


@pytest.mark.parametrize("bad", ["", "has space", "new\nline", 42])
def test_bad_tokens_refused(bad) -> None:
    with pytest.raises(TokenError):
        TokenSource(refresh=lambda: bad).get()


def test_async_callback_refused_by_sync_path() -> None:
    async def cb() -> str:
        return "x"

    with pytest.raises(TokenError, match="async"):
        TokenSource(refresh=cb).get()


def test_client_sends_refreshed_token(fake_signer) -> None:
    tokens = iter(["first", "second"])
    src = TokenSource(jwt_with({"exp": 1}), refresh=lambda: next(tokens), refresh_margin=60)
    with SignerClient(fake_signer.target, token=src, trust=TlsTrust(ca_pem=fake_signer.ca_pem)) as c:
        c.sign_certificate_verify(mk(bytes(32)))
        c.sign_certificate_verify(mk(bytes(32)))  # "first" has no exp: kept
    assert [s.metadata["authorization"] for s in fake_signer.seen] == ["Bearer first", "Bearer first"]


async def test_async_client_awaits_async_callback(fake_signer) -> None:
    async def cb() -> str:
        return "from-async-callback"

    async with AsyncSignerClient(
        fake_signer.target, token_refresh=cb, trust=TlsTrust(ca_pem=fake_signer.ca_pem)
    ) as c:
        await c.sign_certificate_verify(mk(bytes(48)))
    assert fake_signer.seen[0].metadata["authorization"] == "Bearer from-async-callback"


def test_no_token_at_all_is_refused() -> None:
    with pytest.raises(TokenError):
        SignerClient("127.0.0.1:1")
