"""``swqos admin`` against a running stack (the CLI is blocking: it runs in a thread)."""

from __future__ import annotations

import asyncio
import json
import socket

import grpc
import pytest

from swqos_core.cli import main
from swqos_ops.testing import admin_service, ops_config
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack


async def test_cli_drives_the_admin_api(tmp_path, admin_store, monkeypatch, capsys):
    store, token = admin_store
    token_file = tmp_path / "admin.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        url = f"http://127.0.0.1:{admin_service(stack).port}"
        monkeypatch.setenv("SWQOS_ADMIN_URL", url)

        async def swqos(*argv: str) -> int:
            return await asyncio.to_thread(main, ["admin", "--token-file", str(token_file), *argv])

        assert await swqos("status") == 0
        assert json.loads(capsys.readouterr().out)["enclave"]["reachable"] is True

        assert await swqos("revoke-trader", "zed") == 1
        assert "unknown trader 'zed'" in capsys.readouterr().err
        assert await swqos("revoke-trader", "zed", "--force") == 0
        assert json.loads(capsys.readouterr().out)["revoked"] is True
        assert (await stack.sign(valid_cv(), token=stack.token("zed"))).code == grpc.StatusCode.PERMISSION_DENIED

        assert await swqos("quota", "zed", "--rate", "120/60/32") == 0
        quota = json.loads(capsys.readouterr().out)["quota"]["rate_limit.gcra"]
        assert quota["rate"]["burst"] == 32
        assert await swqos("allowlist", "zed", "10.0.0.0/8", "2001:db8::/32") == 0
        assert await swqos("allowlist", "zed") == 2  # neither CIDRs nor --clear
        assert await swqos("drain") == 0
        assert stack.state.draining is True
        assert await swqos("undrain") == 0
        capsys.readouterr()
        assert await swqos("metrics") == 0
        assert "swqos_admin_requests_total" in capsys.readouterr().out

        monkeypatch.delenv("SWQOS_ADMIN_TOKEN", raising=False)
        assert await asyncio.to_thread(main, ["admin", "status"]) == 1  # no token: refused
        assert "401" in capsys.readouterr().err


def test_missing_socket_is_named_in_the_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SWQOS_ADMIN_URL", raising=False)
    nope = tmp_path / "nope.sock"
    assert main(["admin", "--url", f"unix://{nope}", "status"]) == 2
    err = capsys.readouterr().err
    assert str(nope) in err and "No such file or directory" in err


def test_refused_tcp_address_is_named_in_the_error(capsys):
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        assert main(["admin", "--url", url, "status"]) == 2
    assert url in capsys.readouterr().err


def test_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["admin", "--help"])
    out = capsys.readouterr().out
    assert "swqos admin operations" in out and "[layers.service.admin]" in out
    assert "``" not in out and ":class:" not in out


async def test_cli_calls_any_operation(tmp_path, admin_store, monkeypatch, capsys):
    store, token = admin_store
    monkeypatch.setenv("SWQOS_ADMIN_TOKEN", token)
    async with running_stack(tmp_path, proxy=ops_config(tmp_path, store)) as stack:
        monkeypatch.setenv("SWQOS_ADMIN_URL", f"http://127.0.0.1:{admin_service(stack).port}")
        assert await asyncio.to_thread(main, ["admin", "operations"]) == 0
        names = {op["name"] for op in json.loads(capsys.readouterr().out)["operations"]}
        assert {"drain", "revoke-trader", "set-quota"} <= names
        assert await asyncio.to_thread(main, ["admin", "call", "set-allowlist", "sub=zoe", 'cidrs=["10.0.0.0/8"]',
                                              "force=true"]) == 0
        assert json.loads(capsys.readouterr().out)["cidrs"] == ["10.0.0.0/8"]
        assert await asyncio.to_thread(main, ["admin", "call", "--get", "trader", "sub=zoe"]) == 0
        assert json.loads(capsys.readouterr().out)["policy"]["auth_jwt"]["allowlist"] == ["10.0.0.0/8"]
        assert await asyncio.to_thread(main, ["admin", "call", "drain", "bogus=1"]) == 1
        assert "bogus" in capsys.readouterr().err and stack.state.draining is False
