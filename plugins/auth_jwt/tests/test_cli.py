"""``swqos token``: minting with an operator's own issuer, and file errors that name their path."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from swqos_auth_jwt import cli
from swqos_auth_jwt.jwt_auth import JwtAuthenticator, JwtSettings
from swqos_core import schema
from swqos_core.errors import Rejection

from .authjwt_helpers import bearer, client, write_pub

ISS = "https://issuer.operator.example"
AUD = "validator:7Np41oeYqPefeNQEHSv1UDhYrehxin3NStELsSKCT4K2"


def run(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="swqos")
    cli.add_commands(p.add_subparsers())
    args = p.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def issuer_key(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "issuer.key"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return pem, write_pub(tmp_path / "issuer.pub.pem", key)


def authenticator(tmp_path: Path, public: Path, audience: str = AUD) -> JwtAuthenticator:
    """A jwt authenticator built from a TOML-shaped table, as [layers.auth.jwt] would configure it."""
    problems: list[str] = []
    raw = {"issuer": ISS, "audience": audience, "keys": {"op-2026": {"public_key": str(public)}}}
    settings = schema.build(JwtSettings, raw, where="layers.auth.jwt", base_dir=tmp_path, problems=problems)
    assert problems == []
    return JwtAuthenticator(settings)


def mint(pem: Path, capsys, *extra: str) -> str:
    code = run("token", "issue", "--key", str(pem), "--kid", "op-2026", "--issuer", ISS, "--audience", AUD,
               "--sub", "desk-7", *extra)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out.strip()


async def test_own_issuer_token_is_accepted_by_that_issuer(tmp_path, issuer_key, capsys) -> None:
    pem, public = issuer_key
    token = mint(pem, capsys, "--ttl", "120")
    principal = await authenticator(tmp_path, public).authenticate(bearer(token), client())
    assert principal is not None and principal.subject == "desk-7" and principal.role == "trader"
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    body = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert header == {"alg": "ES256", "typ": "JWT", "kid": "op-2026"}
    assert body["iss"] == ISS and body["aud"] == AUD and body["exp"] - body["iat"] == 120


async def test_own_issuer_token_is_refused_for_another_audience(tmp_path, issuer_key, capsys) -> None:
    pem, public = issuer_key
    token = mint(pem, capsys)
    other = authenticator(tmp_path, public, audience="validator:11111111111111111111111111111111")
    with pytest.raises(Rejection) as info:
        await other.authenticate(bearer(token), client())
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED and "aud" in info.value.reason


async def test_own_issuer_token_signed_by_another_key_is_refused(tmp_path, issuer_key, capsys) -> None:
    pem, _ = issuer_key
    token = mint(pem, capsys)
    stranger = write_pub(tmp_path / "stranger.pem", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(Rejection) as info:
        await authenticator(tmp_path, stranger).authenticate(bearer(token), client())
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(("argv", "message"), [
    (["--kid", "k", "--issuer", ISS, "--audience", AUD], "needs --key"),
    (["--key", "KEY", "--issuer", ISS, "--audience", AUD], "needs --kid"),
    (["--key", "KEY", "--kid", "k", "--audience", AUD], "needs --issuer"),
    (["--key", "KEY", "--kid", "k", "--issuer", ISS], "needs --audience"),
    (["--key", "KEY", "--kid", "k", "--issuer", ISS, "--audience", AUD, "--dev-dir", "DIR"], "cannot be combined"),
    ([], "give --key, --kid, --issuer and --audience"),
    (["--key", "KEY", "--kid", "k", "--issuer", ISS, "--audience", AUD, "--ttl", "0"], "--ttl"),
    (["--key", "KEY", "--kid", "k", "--issuer", ISS, "--audience", AUD, "--ttl", "86401"], "--ttl"),
])
def test_issue_usage_errors(issuer_key, capsys, argv, message) -> None:
    pem, _ = issuer_key
    argv = [str(pem) if a == "KEY" else a for a in argv]
    assert run("token", "issue", "--sub", "s", *argv) == 2
    out = capsys.readouterr()
    assert message in out.err and out.out == ""


def test_issue_key_file_errors_name_the_path(tmp_path, issuer_key, capsys) -> None:
    pem, public = issuer_key
    common = ["--kid", "k", "--issuer", ISS, "--audience", AUD, "--sub", "s"]
    missing = tmp_path / "nope.key"
    assert run("token", "issue", "--key", str(missing), *common) == 2
    assert f"cannot read issuer key {missing}: No such file or directory" in capsys.readouterr().err

    pem.chmod(0o644)
    assert run("token", "issue", "--key", str(pem), *common) == 2
    err = capsys.readouterr().err
    assert str(pem) in err and "readable by others" in err and "0644" in err

    public.chmod(0o600)  # a public key where the private one belongs
    assert run("token", "issue", "--key", str(public), *common) == 2
    assert f"issuer key {public} is not an unencrypted EC P-256 private key" in capsys.readouterr().err


def test_issue_dev_dir_that_is_missing_names_the_path(tmp_path, capsys) -> None:
    assert run("token", "issue", "--dev-dir", str(tmp_path / "nodev"), "--sub", "s") == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nodev") in err and "No such file" in err


@pytest.mark.parametrize("command", [["list"], ["revoke", "ops"]])
def test_a_missing_store_is_an_error_naming_it(tmp_path, capsys, command) -> None:
    typo = tmp_path / "typo.json"
    assert run("token", command[0], "--store", str(typo), *command[1:]) == 2
    out = capsys.readouterr()
    assert f"token store {typo} does not exist" in out.err and out.out == ""
    assert not typo.exists()


def test_a_broken_store_is_named(tmp_path, capsys) -> None:
    store = tmp_path / "t.json"
    store.write_text('{"version": 2, "tokens": {}}')
    for argv in (["list"], ["revoke", "x"], ["create", "--name", "n"]):
        assert run("token", argv[0], "--store", str(store), *argv[1:]) == 2
        assert f"token store {store}: not a version 1 token store" in capsys.readouterr().err
    assert store.read_text() == '{"version": 2, "tokens": {}}'  # nothing written over it


def test_every_option_has_help() -> None:
    p = argparse.ArgumentParser(prog="swqos")
    sub = p.add_subparsers()
    cli.add_commands(sub)
    token = sub.choices["token"]
    (token_sub,) = [a for a in token._actions if isinstance(a, argparse._SubParsersAction)]
    for name, parser in token_sub.choices.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"swqos token {name} {action.dest} has no help"
