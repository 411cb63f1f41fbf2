"""The kit's plugin: the provider hook spec through swqos_addhooks, `swqos cdn` built from it, one
message naming both owners when two plugins register one provider name."""

import pytest

from swqos_cdn import CdnProvider, CdnProviderError, ParsedRanges, Snapshot, collect_providers, run_cdn_command
from swqos_cdn import plugin as kit
from swqos_core import cli, config, hookimpl, plugins
from swqos_core.errors import ConfigError


def snap(provider):
    return Snapshot(provider, "test", "2026-01-01T00:00:00Z", 10, ("173.245.48.0/20",), ("2606:4700::/32",))


def provider(name):
    return CdnProvider(name=name, title=name.title(), default_url="https://example.invalid/",
                       parse=lambda b: ParsedRanges([], []), shipped=lambda: snap(name))


class cdn_plugin:
    """An in-process CDN plugin registering ``providers`` (SWQOS_PLUGIN_NAME names it)."""

    def __init__(self, *providers, name):
        self.providers = providers
        self.SWQOS_PLUGIN_NAME = name

    @hookimpl
    def swqos_register_cdn_providers(self, register):
        for p in self.providers:
            register(p)


def manager(*extra):
    pm, _loaded, problems = plugins.load_plugins(["cdn"], extra_plugins=extra)
    assert problems == []
    return pm


def test_the_kit_adds_the_provider_hook_spec():
    pm = manager()
    caller = pm.hook.swqos_register_cdn_providers
    assert caller.spec is not None and "register(provider)" in caller.spec.function.__doc__


def test_providers_are_collected_through_the_hook():
    a, b = provider("alpha"), provider("beta")
    pm = manager(cdn_plugin(a, name="one"), cdn_plugin(b, a, name="two"))  # the same object twice is harmless
    assert collect_providers(pm) == {"alpha": a, "beta": b}


def test_two_plugins_registering_one_name_get_one_message_naming_both():
    pm = manager(cdn_plugin(provider("alpha"), name="first"), cdn_plugin(provider("alpha"), name="second"))
    with pytest.raises(CdnProviderError) as info:
        collect_providers(pm)
    message = str(info.value)
    assert message.count("'alpha'") == 1 and "'first'" in message and "'second'" in message


def test_the_clash_stops_the_cdn_command(capsys):
    pm = manager(cdn_plugin(provider("alpha"), name="first"), cdn_plugin(provider("alpha"), name="second"))
    assert run_cdn_command(["show", "alpha"], pm) == 2
    err = capsys.readouterr().err
    assert "registered twice" in err and "'first'" in err and "'second'" in err


def test_the_clash_stops_host_proxy_startup(tmp_path):
    (tmp_path / "p.toml").write_text("""
[proxy]
tls_cert = "tls.crt"
tls_key = "tls.key"
enclave = "unix:///tmp/enclave.sock"
[swqos]
plugins = ["cdn"]
[pipeline]
auth = []
""")
    cfg = config.load(tmp_path / "p.toml")
    app = plugins.build_app(cfg, extra_plugins=[cdn_plugin(provider("alpha"), name="first"),
                                                cdn_plugin(provider("alpha"), name="second")])
    with pytest.raises(ConfigError) as info:
        plugins.collect_contributions(app)
    (problem,) = info.value.problems
    assert "CDN provider 'alpha' is registered twice" in problem and "'first'" in problem and "'second'" in problem


def test_a_raising_provider_hook_is_named(capsys):
    class Broken:
        SWQOS_PLUGIN_NAME = "broken"

        @hookimpl
        def swqos_register_cdn_providers(self, register):
            raise RuntimeError("boom")

    broken = Broken()
    with pytest.raises(CdnProviderError, match="'broken': swqos_register_cdn_providers failed: RuntimeError: boom"):
        collect_providers(manager(broken))


def test_something_else_than_a_provider_is_refused():
    with pytest.raises(CdnProviderError, match=r"not a swqos_cdn\.CdnProvider"):
        collect_providers(manager(cdn_plugin("cloudflare", name="confused")))


def test_a_cdn_plugin_brings_the_kit_along():
    """A config listing only cdn_cloudflare still gets the kit (hook spec, commands, contributions)."""
    pm, _loaded, problems = plugins.load_plugins(["cdn_cloudflare"])
    assert problems == []
    assert pm.get_plugin("cdn") is kit
    assert set(collect_providers(pm)) == {"cloudflare"}


def test_swqos_cdn_lists_every_installed_provider(capsys):
    assert cli.main(["cdn", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown provider 'nope'" in err and "cloudflare" in err and "cloudfront" in err
