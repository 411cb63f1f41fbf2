"""The dev directory and the swqos_dev_defaults hook, in process."""

from __future__ import annotations

import socket

import pytest
from nacl import signing

from swqos_core import hookimpl, plugins, schema
from swqos_core.identity import from_base58
from swqos_dev import devstack, hookspecs
from swqos_dev.contribution import DevContribution, DevFile
from swqos_dev.run import check_listen


def test_the_identity_key_is_never_generated_in_the_proxy_process(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("identity key material created in the host-proxy process")

    monkeypatch.setattr(signing.SigningKey, "generate", forbidden)
    dev = devstack.prepare(tmp_path / "dev")
    assert len(from_base58(dev.identity_b58())) == 32
    assert dev.identity.stat().st_mode & 0o777 == 0o600


def _jwt_authenticator(dev):
    from swqos_auth_jwt.jwt_auth import JwtAuthenticator, JwtSettings

    raw = devstack.proxy_config(dev, "127.0.0.1:0")["layers"]["auth"]["jwt"]
    problems: list[str] = []
    settings = schema.build(JwtSettings, raw, where="jwt", base_dir=dev.root, problems=problems)
    assert problems == []
    return JwtAuthenticator(settings)


async def test_a_reused_directory_keeps_its_keys_so_earlier_tokens_stay_valid(tmp_path):
    from swqos_core.layers import ClientAddress, RequestHead
    from swqos_core.net import parse_ip

    first = devstack.prepare(tmp_path / "dev")
    token = devstack.mint_dev_token(first, "trader-1")
    kept = {n: (first.root / n).read_bytes() for n in ("identity.json", "identity.pub", "issuer.key", "ca.pem", "tls.key")}
    second = devstack.prepare(tmp_path / "dev", listen="127.0.0.1:9999")
    assert {n: (second.root / n).read_bytes() for n in kept} == kept
    assert 'listen = "127.0.0.1:9999"' in second.config.read_text()
    head = RequestHead(rpc="SignCertificateVerify", peer="ipv4:127.0.0.1:1", metadata=(("authorization", f"Bearer {token}"),))
    principal = await _jwt_authenticator(second).authenticate(head, ClientAddress(parse_ip("127.0.0.1"), "peer", ""))
    assert principal is not None and principal.subject == "trader-1"


@pytest.mark.parametrize("leftover", ["identity.json", "config.toml", "notes.txt"])
def test_a_non_empty_directory_without_the_marker_is_refused(tmp_path, leftover):
    root = tmp_path / "dev"
    root.mkdir()
    (root / leftover).write_text("x")
    with pytest.raises(devstack.DevDirError, match="is not a dev stack directory"):
        devstack.prepare(root)
    assert [p.name for p in root.iterdir()] == [leftover]


def test_an_empty_directory_is_taken(tmp_path):
    root = tmp_path / "dev"
    root.mkdir(mode=0o755)
    dev = devstack.prepare(root)
    assert dev.marker.is_file() and root.stat().st_mode & 0o777 == 0o700


def test_a_directory_in_use_by_a_running_stack_is_refused(tmp_path):
    dev = devstack.prepare(tmp_path / "dev")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dev.socket))
    listener.listen(1)
    try:
        with pytest.raises(devstack.DevDirError, match="in use"):
            devstack.prepare(tmp_path / "dev")
    finally:
        listener.close()
    devstack.prepare(tmp_path / "dev")  # a stale socket (nobody listening) is removed instead
    assert not dev.socket.exists()


def test_the_configs_come_from_the_plugins_hookimpls(tmp_path):
    dev = devstack.prepare(tmp_path / "dev")
    assert [name for name, _ in dev.contributions] == ["auth_jwt", "payload_tls_cv", "ratelimit"]
    proxy = devstack.proxy_config(dev, "127.0.0.1:0")
    assert proxy["swqos"]["plugins"] == ["auth_jwt", "ratelimit"]
    assert proxy["pipeline"] == {"client_ip": ["peer"], "validate": ["limits"], "auth": ["jwt"], "rate_limit": ["gcra"]}
    assert "rate_limit" not in devstack.proxy_config(dev, "127.0.0.1:0", without=["ratelimit"])["pipeline"]
    enclave = devstack.enclave_config(dev)
    assert enclave["pipeline"]["payload_match"] == "tls_cv" and enclave["swqos"]["plugins"] == ["payload_tls_cv"]
    assert dev.issuer_key == dev.root / "issuer.key"  # a contributed file handle
    assert any("development quotas" in line for line in devstack.banner_lines(dev))


class Clashing:
    """Sets [pipeline] payload_match to another value than payload_tls_cv does."""

    @hookimpl
    def swqos_dev_defaults(self, dev_dir):
        return DevContribution(enclave={"pipeline": {"payload_match": "other"}})


class Raising:
    @hookimpl
    def swqos_dev_defaults(self, dev_dir):
        raise RuntimeError("boom")


class WrongType:
    @hookimpl
    def swqos_dev_defaults(self, dev_dir):
        return {"proxy": {}}


class FileClash:
    @hookimpl
    def swqos_dev_defaults(self, dev_dir):
        return DevContribution(files={"mine": DevFile("config.toml", b"x")})


def _pm_with(extra):
    pm, _, problems = plugins.load_plugins(["dev", "auth_jwt", "ratelimit", "payload_tls_cv"], extra_plugins=[extra])
    assert problems == []
    return pm


def test_one_value_set_twice_names_both_plugins(tmp_path):
    with pytest.raises(devstack.DevDirError, match=r"payload_match is set twice: by plugin 'extra-0' and by "
                                                   r"plugin 'payload_tls_cv'"):
        dev = devstack.prepare(tmp_path / "dev", pm=_pm_with(Clashing()))
        devstack.enclave_config(dev)


@pytest.mark.parametrize(("plugin", "message"), [
    (Raising(), "plugin 'extra-0': swqos_dev_defaults failed: RuntimeError: boom"),
    (WrongType(), "plugin 'extra-0': swqos_dev_defaults returned dict, not a DevContribution"),
    (FileClash(), "dev file 'config.toml' is contributed twice: by the dev stack and by extra-0"),
])
def test_a_broken_contribution_stops_the_stack_naming_the_plugin(tmp_path, plugin, message):
    with pytest.raises(devstack.DevDirError) as info:
        devstack.prepare(tmp_path / "dev", pm=_pm_with(plugin))
    assert str(info.value) == message
    assert not (tmp_path / "dev" / "config.toml").exists()


def test_the_hook_is_documented_and_owned_by_swqos_dev():
    assert "swqos_dev_defaults" in {n for n in dir(hookspecs) if n.startswith("swqos_")}
    assert ":param dev_dir:" in hookspecs.swqos_dev_defaults.__doc__
    pm, _, _ = plugins.load_plugins(["dev"])
    assert pm.hook.swqos_dev_defaults.spec is not None


@pytest.mark.parametrize(("listen", "public", "ok"), [
    ("127.0.0.1:8443", False, True),
    ("[::1]:8443", False, True),
    ("localhost:0", False, True),
    ("0.0.0.0:8443", False, False),
    ("192.0.2.10:8443", False, False),
    (":8443", False, False),  # an empty host binds every address
    ("0.0.0.0:8443", True, True),
])
def test_listen_must_be_loopback_unless_dev_public(listen, public, ok):
    if ok:
        check_listen(listen, public)
    else:
        with pytest.raises(devstack.DevDirError, match=r"not a loopback address.*--dev-public"):
            check_listen(listen, public)
