"""Strict decoders (property-based), the minting function, and the swqos token commands."""

from __future__ import annotations

import argparse
import base64
import json

import jwt as pyjwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swqos_auth_jwt import cli, issuer
from swqos_auth_jwt.api_tokens import read_store
from swqos_auth_jwt.jwt_auth import JwtAuthenticator, JwtSettings
from swqos_auth_jwt.strict import StrictDecodeError, b64url_decode, b64url_encode, json_object
from swqos_core import schema
from swqos_dev import devstack

from .authjwt_helpers import FakeClock, bearer, client


@given(st.binary(max_size=200))
def test_b64url_roundtrip(raw):
    assert b64url_decode(b64url_encode(raw)) == raw


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .", max_size=60))
def test_b64url_accepts_only_the_canonical_spelling(text):
    try:
        raw = b64url_decode(text)
    except StrictDecodeError:
        return
    assert b64url_encode(raw) == text  # whatever is accepted is exactly one byte string's encoding


def test_b64url_examples():
    assert b64url_decode("") == b""
    for bad in ["QQ==", "QR", "Q", "a+b/", "QQ="]:
        with pytest.raises(StrictDecodeError):
            b64url_decode(bad)
    assert b64url_decode("QQ") == b"A"


@pytest.mark.parametrize("raw", [b'{"a":1,"a":1}', b'{"a":{"b":1,"b":2}}', b'[{"a":1}]', b'{"a":NaN}',
                                 b'{"a":-Infinity}', b"\xef\xbb\xbf{}", b"", b"1"])
def test_json_object_refusals(raw):
    with pytest.raises(StrictDecodeError):
        json_object(raw)


def test_json_object_accepts_plain_objects():
    assert json_object(b'{"a":[1,{"b":2}],"c":"\\u00e9"}') == {"a": [1, {"b": 2}], "c": "é"}


# --- minting and the dev stack ------------------------------------------------------------------


@pytest.fixture
def dev(tmp_path):
    return devstack.prepare(tmp_path / "dev")


def dev_authenticator(dev, clock=None) -> JwtAuthenticator:
    raw = devstack.proxy_config(dev, "127.0.0.1:0")["layers"]["auth"]["jwt"]
    problems: list[str] = []
    s = schema.build(JwtSettings, raw, where="jwt", base_dir=dev.root, problems=problems)
    assert problems == []
    return JwtAuthenticator(s, **({"clock": clock} if clock else {}))


async def test_minted_token_passes_the_nine_steps_and_pyjwt(dev):
    tok = issuer.mint_dev(dev.root, "trader-7", 120, venue="x")
    p = await dev_authenticator(dev).authenticate(bearer(tok), client())
    assert (p.subject, p.role) == ("trader-7", "trader")
    pub = (dev.root / "issuer.pub.pem").read_bytes()
    claims = pyjwt.decode(tok, pub, algorithms=["ES256"], audience=issuer.dev_audience(dev.root), issuer="swqos-dev")
    assert claims["exp"] - claims["iat"] == 120 and claims["venue"] == "x" and len(claims["jti"]) >= 16
    assert pyjwt.get_unverified_header(tok) == {"alg": "ES256", "typ": "JWT", "kid": "dev-1"}


async def test_core_dev_stack_tokens_pass_too(dev):
    tok = devstack.mint_dev_token(dev, "trader-1")
    assert (await dev_authenticator(dev).authenticate(bearer(tok), client())).subject == "trader-1"


def test_mint_refuses_non_p256_keys():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP384R1())
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ValueError):
        issuer.mint(pem, "k", "i", "a", "s")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="swqos")
    cli.add_commands(p.add_subparsers())
    return p


def run(*argv: str) -> int:
    args = parser().parse_args(list(argv))
    return args.func(args)


async def test_cli_token_issue(dev, capsys):
    assert run("token", "issue", "--dev-dir", str(dev.root), "--sub", "alice", "--ttl", "60") == 0
    tok = capsys.readouterr().out.strip()
    p = await dev_authenticator(dev).authenticate(bearer(tok), client())
    assert p.subject == "alice"
    body = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
    assert body["exp"] - body["iat"] == 60 and body["aud"] == issuer.dev_audience(dev.root)
    assert run("token", "issue", "--dev-dir", str(dev.root / "nope"), "--sub", "a") == 2
    assert run("token", "issue", "--dev-dir", str(dev.root), "--sub", "a", "--ttl", "0") == 2


async def test_cli_default_ttl_fits_the_default_bound(dev, capsys):
    assert run("token", "issue", "--dev-dir", str(dev.root), "--sub", "bob") == 0
    tok = capsys.readouterr().out.strip()
    body = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
    assert body["exp"] - body["iat"] == 300
    late = FakeClock(body["iat"] + 200)
    assert (await dev_authenticator(dev, late).authenticate(bearer(tok), client())).subject == "bob"


def test_cli_api_token_lifecycle(tmp_path, capsys):
    store = tmp_path / "t.json"
    assert run("token", "create", "--name", "ops", "--store", str(store), "--role", "admin") == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("swqat_") and "only time" in out.err
    assert run("token", "list", "--store", str(store)) == 0
    listing = capsys.readouterr().out
    assert "ops" in listing and "admin" in listing and "active" in listing and token[-43:] not in listing
    (tid,) = read_store(store)
    assert run("token", "revoke", "--store", str(store), tid) == 0
    assert run("token", "revoke", "--store", str(store), tid) == 2  # already revoked
    run("token", "list", "--store", str(store))
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run("token", "create", "--name", "x", "--store", str(store), "--role", "probe")
