"""Plugins are chosen by configuration only, and every problem is reported at once."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from swqos_core import config, hookimpl, plugins, schema
from swqos_core.errors import ConfigError


class FakeDist:
    def __init__(self, name: str, version: str = "1.0") -> None:
        self.metadata = {"Name": name}
        self.version = version


class FakeEntryPoint:
    group = plugins.ENTRY_POINT_GROUP

    def __init__(self, name: str, module: object, dist: str = "acme-plugin") -> None:
        self.name = name
        self.module = module
        self.dist = FakeDist(dist)
        self.loaded = False

    def load(self) -> object:
        self.loaded = True
        return self.module


@pytest.fixture
def installed(monkeypatch):
    """Replace the installed entry points with fakes; returns the list to append to."""
    eps: list[FakeEntryPoint] = []
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [e for e in eps if e.group == group])
    return eps


@dataclass
class ColourSettings:
    colour: str = "blue"


class Resolver:
    async def resolve(self, head):
        return None


def module(**hooks) -> types.ModuleType:
    mod = types.ModuleType("fake_swqos_plugin")  # modules compare by identity, as real plugins do
    for name, fn in hooks.items():
        setattr(mod, name, fn)
    return mod


@hookimpl
def register_resolver(register):
    register("acme", lambda s, ctx: Resolver(), ColourSettings)


def acme_plugin():
    return module(swqos_register_client_ip_resolvers=register_resolver)


def proxy_cfg(tmp_path: Path, plugins_list, pipeline=None, layers=None, allow_test=False) -> config.AppConfig:
    data = {
        "swqos": {"plugins": plugins_list, "allow_test_plugins": allow_test},
        "proxy": {"tls_cert": "c", "tls_key": "k", "enclave": "unix:///x"},
        "pipeline": {"auth": [], **(pipeline or {})},
        "layers": layers or {},
    }
    return config.parse(data, path=tmp_path / "proxy.toml")


def test_only_listed_plugins_are_imported(installed, tmp_path):
    wanted, other = FakeEntryPoint("acme", acme_plugin()), FakeEntryPoint("other", acme_plugin(), dist="other")
    installed += [wanted, other]
    app = plugins.build_app(proxy_cfg(tmp_path, ["acme"], {"client_ip": ["acme"]}))
    assert wanted.loaded and not other.loaded
    assert [name for name, _ in app.layers["client_ip"]] == ["acme"]


def test_settings_reach_the_factory(installed, tmp_path):
    seen = []

    @hookimpl
    def reg(register):
        register("acme", lambda s, ctx: seen.append((s, ctx.name, ctx.kind)) or Resolver(), ColourSettings)

    installed.append(FakeEntryPoint("acme", module(swqos_register_client_ip_resolvers=reg)))
    plugins.build_app(proxy_cfg(tmp_path, ["acme"], {"client_ip": ["acme"]},
                                {"client_ip": {"acme": {"colour": "red"}}}))
    assert seen == [(ColourSettings("red"), "acme", "client_ip")]


def test_every_problem_is_reported_in_one_error(installed, tmp_path):
    @hookimpl
    def swqos_register_authenticator(register):  # misspelled: missing the final s
        pass

    installed.append(FakeEntryPoint("acme", acme_plugin()))
    installed.append(FakeEntryPoint("typo", module(swqos_register_authenticator=swqos_register_authenticator),
                                    dist="typo-plugin"))
    cfg = proxy_cfg(
        tmp_path,
        ["acme", "acme", "missing", "typo"],
        {"client_ip": ["acmee"], "auth": ["jwt"]},
        {"client_ip": {"peer": {"x": 1}}},
    )
    with pytest.raises(ConfigError) as info:
        plugins.build_app(cfg)
    text = str(info.value)
    assert "'acme' is listed twice" in text
    assert "plugin 'missing' is not installed (installed plugins: acme, typo)" in text
    assert "unknown hook 'swqos_register_authenticator'" in text
    assert "unknown implementation 'acmee' (available: acme, peer)" in text
    assert "[pipeline] auth: unknown implementation 'jwt'" in text
    assert "[layers.client_ip.peer]: 'peer' takes no settings" in text  # checked even when not selected
    assert len(info.value.problems) >= 6


def test_unknown_config_key_names_the_known_ones(installed, tmp_path):
    installed.append(FakeEntryPoint("acme", acme_plugin()))
    cfg = proxy_cfg(tmp_path, ["acme"], {"client_ip": ["acme"]}, {"client_ip": {"acme": {"color": "red"}}})
    with pytest.raises(ConfigError, match=r"unknown key 'color' \(known keys: colour\)"):
        plugins.build_app(cfg)


def test_wrong_type_is_refused(installed, tmp_path):
    installed.append(FakeEntryPoint("acme", acme_plugin()))
    cfg = proxy_cfg(tmp_path, ["acme"], {"client_ip": ["acme"]}, {"client_ip": {"acme": {"colour": 3}}})
    with pytest.raises(ConfigError, match="expected a string"):
        plugins.build_app(cfg)


def test_two_distributions_claiming_one_name(installed, tmp_path):
    installed += [FakeEntryPoint("acme", acme_plugin(), "acme-a"), FakeEntryPoint("acme", acme_plugin(), "acme-b")]
    with pytest.raises(ConfigError, match=r"provided by several distributions: acme-a 1\.0, acme-b 1\.0"):
        plugins.build_app(proxy_cfg(tmp_path, ["acme"]))


def test_two_plugins_registering_one_implementation_name(installed, tmp_path):
    installed += [FakeEntryPoint("one", acme_plugin(), "dist-one"), FakeEntryPoint("two", acme_plugin(), "dist-two")]
    with pytest.raises(ConfigError, match=r"'acme' is registered twice: by dist-one 1\.0 and by dist-two 1\.0"):
        plugins.build_app(proxy_cfg(tmp_path, ["one", "two"]))


def test_hookimpl_with_an_unknown_argument_is_refused(installed, tmp_path):
    @hookimpl
    def swqos_register_signers(register, colour):
        pass

    installed.append(FakeEntryPoint("bad", module(swqos_register_signers=swqos_register_signers)))
    with pytest.raises(ConfigError, match="colour"):
        plugins.build_app(proxy_cfg(tmp_path, ["bad"]))


def test_test_implementations_need_explicit_permission(installed, tmp_path):
    @hookimpl
    def reg(register):
        register("fake", lambda s, ctx: Resolver(), insecure=True)

    installed.append(FakeEntryPoint("fakes", module(swqos_register_client_ip_resolvers=reg)))
    with pytest.raises(ConfigError, match="test implementation; it can only be selected with"):
        plugins.build_app(proxy_cfg(tmp_path, ["fakes"], {"client_ip": ["fake"]}))
    app = plugins.build_app(proxy_cfg(tmp_path, ["fakes"], {"client_ip": ["fake"]}, allow_test=True))
    assert app.layers["client_ip"][0][0] == "fake"


def test_a_factory_returning_the_wrong_kind_of_object_is_refused(installed, tmp_path):
    @hookimpl
    def reg(register):
        register("odd", lambda s, ctx: object())

    installed.append(FakeEntryPoint("odd", module(swqos_register_client_ip_resolvers=reg)))
    with pytest.raises(ConfigError, match="not a ClientIpResolver"):
        plugins.build_app(proxy_cfg(tmp_path, ["odd"], {"client_ip": ["odd"]}))


def test_a_plugin_that_fails_to_import_is_named(installed, tmp_path):
    class Broken(FakeEntryPoint):
        def load(self):
            raise ImportError("No module named 'left_pad'")

    installed.append(Broken("broken", None, "broken-dist"))
    with pytest.raises(ConfigError, match=r"plugin 'broken' \(broken-dist 1.0\) failed to import: ImportError"):
        plugins.build_app(proxy_cfg(tmp_path, ["broken"]))


def test_unknown_sections_and_missing_required_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.parse({"proxy": {"listen": "x"}, "pipeline": {}, "extra": {}}, path=tmp_path / "p.toml")
    text = str(info.value)
    assert "unknown section [extra]" in text
    assert "missing required key 'tls_cert'" in text
    assert "missing required key 'auth'" in text


def test_secret_references_are_resolved_and_never_inline(tmp_path, monkeypatch):
    @dataclass
    class S:
        key: schema.Secret

    problems: list[str] = []
    monkeypatch.setenv("SWQOS_TEST_SECRET", "hunter2")
    s = schema.build(S, {"key": {"$env": "SWQOS_TEST_SECRET"}}, where="[t]", base_dir=tmp_path, problems=problems)
    assert problems == [] and s.key.reveal() == b"hunter2" and "hunter2" not in repr(s)
    schema.build(S, {"key": "hunter2"}, where="[t]", base_dir=tmp_path, problems=problems)
    assert problems and "must be a reference" in problems[0] and "hunter2" not in problems[0]


def swqos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swqos_core.cli", *args], capture_output=True, text=True, timeout=60)


def test_config_check_cli_reports_every_problem(tmp_path):
    bad = tmp_path / "enclave.toml"
    bad.write_text(
        '[swqos]\nplugins = ["payload_tls_cv", "nope"]\n[enclave]\nlisten = "unix:///tmp/x.sock"\n'
        '[pipeline]\npayload_match = "tls_cvx"\nkey_provider = "file"\n'
        '[layers.key_provider.file]\npath = "k.json"\ncolour = 1\n'
    )
    result = swqos("config", "check", str(bad))
    assert result.returncode == 1  # invalid (2 is for usage errors)
    assert "3 problems" in result.stderr
    assert "plugin 'nope' is not installed" in result.stderr
    assert "unknown implementation 'tls_cvx' (available: tls_cv)" in result.stderr
    assert "unknown key 'colour'" in result.stderr


def test_config_check_cli_accepts_a_valid_config(tmp_path):
    good = tmp_path / "enclave.toml"
    good.write_text(
        '[swqos]\nplugins = ["payload_tls_cv"]\n[enclave]\nlisten = "unix:///tmp/x.sock"\n'
        '[pipeline]\npayload_match = "tls_cv"\nkey_provider = "file"\n'
        '[layers.key_provider.file]\npath = "k.json"\ncreate = true\n'
    )
    result = swqos("config", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert "valid enclave configuration" in result.stdout


def test_plugins_cli_lists_plugins_versions_and_registrations():
    result = swqos("plugins")
    assert "payload_tls_cv  (swqos-payload-tls-cv 0.1.0)" in result.stdout
    assert "payload_match: tls_cv" in result.stdout
    assert "builtin  (swqos-core" in result.stdout
    assert "key_provider: fake  [test only]" in result.stdout


def test_settings_for_a_standby_implementation_are_checked_but_allowed(installed, tmp_path):
    """A standby CDN's table can stay in the file (failover is one [pipeline] line), but a typo in
    it, or a table for an implementation nobody registers, is still an error."""
    installed.append(FakeEntryPoint("acme", acme_plugin()))
    ready = {"client_ip": {"acme": {"colour": "red"}}}
    app = plugins.build_app(proxy_cfg(tmp_path, ["acme"], {"client_ip": ["peer"]}, ready))
    assert [name for name, _ in app.layers["client_ip"]] == ["peer"]
    with pytest.raises(ConfigError, match=r"\[layers.client_ip.acme\]: unknown key 'color'"):
        plugins.build_app(proxy_cfg(tmp_path, ["acme"], {"client_ip": ["peer"]}, {"client_ip": {"acme": {"color": 1}}}))
    with pytest.raises(ConfigError, match="no loaded plugin registers client_ip 'fastly'"):
        plugins.build_app(proxy_cfg(tmp_path, ["acme"], {"client_ip": ["peer"]}, {"client_ip": {"fastly": {}}}))
