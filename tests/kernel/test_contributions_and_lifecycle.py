"""Contribution hooks, lifecycle and pluggy wiring: every call goes through pluggy, every failure is named."""

from __future__ import annotations

import importlib.metadata
import logging
import types
from dataclasses import dataclass

import pytest

from swqos_core import config, hookimpl, plugins
from swqos_core.errors import ConfigError
from swqos_core.extensions import AdminOperation, MetricFamily


class FakeDist:
    def __init__(self, name: str) -> None:
        self.metadata = {"Name": name}
        self.version = "1.0"


class FakeEntryPoint:
    group = plugins.ENTRY_POINT_GROUP

    def __init__(self, name: str, module: object, dist: str) -> None:
        self.name, self.module, self.dist = name, module, FakeDist(dist)

    def load(self) -> object:
        return self.module


@pytest.fixture
def installed(monkeypatch):
    eps: list[FakeEntryPoint] = []
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [e for e in eps if e.group == group])
    return eps


def module(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, fn)
    return mod


def proxy_config(*names: str) -> config.AppConfig:
    return config.parse({
        "swqos": {"plugins": list(names)},
        "proxy": {"tls_cert": "c.pem", "tls_key": "k.pem", "enclave": "unix:///tmp/x.sock"},
        "pipeline": {"auth": []},
    }, process="proxy")


def app_with(installed, *mods: tuple[str, str, types.ModuleType]) -> plugins.App:
    for name, dist, mod in mods:
        installed.append(FakeEntryPoint(name, mod, dist))
    return plugins.build_app(proxy_config(*[m[0] for m in mods]))


async def _noop(params, actor):
    return {}


def op_plugin(name: str):
    @hookimpl
    def swqos_register_admin_operations(app, register):
        register(AdminOperation("reset-widgets", _noop, "resets"))
    return module(name, swqos_register_admin_operations=swqos_register_admin_operations)


@dataclass
class Collector:
    families: tuple[MetricFamily, ...]

    def collect(self):
        return [(f.name, (), 1.0) for f in self.families]


def metric_plugin(name: str, family: str):
    @hookimpl
    def swqos_register_metrics(app, register):
        register(Collector((MetricFamily(family, "gauge", "widgets"),)))
    return module(name, swqos_register_metrics=swqos_register_metrics)


def test_contributions_land_in_the_app_with_their_owner(installed):
    app = app_with(installed, ("widgets", "acme-widgets", op_plugin("w")),
                   ("gauges", "acme-gauges", metric_plugin("g", "swqos_gauges_level")))
    c = plugins.collect_contributions(app)
    assert c.admin_operations["reset-widgets"][0] == "widgets"
    assert [(owner, [f.name for f in col.families]) for owner, col in c.metrics] == [("gauges", ["swqos_gauges_level"])]


def test_one_admin_operation_from_two_plugins_names_both_owners(installed):
    app = app_with(installed, ("one", "acme-one", op_plugin("a")), ("two", "acme-two", op_plugin("b")))
    with pytest.raises(ConfigError) as info:
        plugins.collect_contributions(app)
    (problem,) = info.value.problems
    assert "admin operation 'reset-widgets' is registered twice" in problem
    assert "acme-one" in problem and "acme-two" in problem


def test_one_metric_name_from_two_plugins_names_both_owners(installed):
    app = app_with(installed, ("one", "acme-one", metric_plugin("a", "swqos_x")),
                   ("two", "acme-two", metric_plugin("b", "swqos_x")))
    with pytest.raises(ConfigError) as info:
        plugins.collect_contributions(app)
    assert "metric 'swqos_x' is registered twice" in info.value.problems[0]
    assert "acme-one" in info.value.problems[0] and "acme-two" in info.value.problems[0]


def test_a_contribution_hook_that_raises_names_the_plugin_and_the_hook(installed):
    @hookimpl
    def swqos_register_status(app, register):
        raise KeyError("oops")

    app = app_with(installed, ("broken", "acme-broken", module("x", swqos_register_status=swqos_register_status)))
    with pytest.raises(ConfigError) as info:
        plugins.collect_contributions(app)
    (problem,) = info.value.problems
    assert "plugin 'broken' (acme-broken 1.0)" in problem and "swqos_register_status failed" in problem


def test_a_registration_hook_that_raises_stops_startup_naming_plugin_and_hook(installed):
    @hookimpl
    def swqos_register_authenticators(register):
        raise ValueError("no")

    installed.append(FakeEntryPoint("bad", module("b", swqos_register_authenticators=swqos_register_authenticators),
                                    "acme-bad"))
    with pytest.raises(ConfigError) as info:
        plugins.build_app(proxy_config("bad"))
    assert any("plugin 'bad'" in p and "swqos_register_authenticators failed" in p for p in info.value.problems)


def test_a_missing_first_party_plugin_names_the_distribution_to_install(installed):
    with pytest.raises(ConfigError) as info:
        plugins.build_app(proxy_config("killswitch"))
    assert "pip install swqos-killswitch" in info.value.problems[0]


def test_a_wrapper_on_a_registration_hook_runs_and_sees_each_plugins_registrations(installed):
    seen: list[str] = []

    @hookimpl
    def swqos_register_services(register):
        register("widget", lambda settings, ctx: None, description="a widget")

    class Auditor:
        @hookimpl(wrapper=True)
        def swqos_register_services(self, register):
            seen.append("before")
            result = yield
            seen.append("after")
            return result

    installed.append(FakeEntryPoint("widgets", module("w", swqos_register_services=swqos_register_services), "acme-w"))
    installed.append(FakeEntryPoint("auditor", Auditor(), "acme-auditor"))
    pm, loaded, problems = plugins.load_plugins(["widgets", "auditor"])
    assert problems == []
    calls: list[str] = []
    pm.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append(name), lambda *a: None)
    registry = plugins.collect_registrations(pm, loaded)
    assert registry.entries["service"]["widget"].plugin == "widgets"  # attribution kept
    assert seen == ["before", "after"]  # the wrapper wrapped the widgets plugin's call
    assert "swqos_register_services" in calls  # monitoring saw it: the call went through pluggy


async def test_every_plugins_shutdown_runs_even_when_earlier_ones_fail(installed, caplog):
    ran: list[str] = []

    def sync_fail(app):
        ran.append("sync_fail")
        raise RuntimeError("sync boom")

    def async_fail(app):
        async def later():
            ran.append("async_fail")
            raise RuntimeError("async boom")
        return later()

    def fine(app):
        ran.append("fine")

    mods = [("a_sync", "acme-a", module("a", swqos_shutdown=hookimpl(sync_fail))),
            ("b_async", "acme-b", module("b", swqos_shutdown=hookimpl(async_fail))),
            ("c_fine", "acme-c", module("c", swqos_shutdown=hookimpl(fine)))]
    app = app_with(installed, *mods)
    with caplog.at_level(logging.ERROR, logger="swqos.plugins"):
        await plugins.shutdown_plugins(app)
    assert sorted(ran) == ["async_fail", "fine", "sync_fail"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("plugin 'a_sync': swqos_shutdown failed" in m and "sync boom" in m for m in messages)
    assert any("plugin 'b_async': swqos_shutdown failed" in m and "async boom" in m for m in messages)
