"""The distribution as the kernel sees it: the service, its settings, its observer, the optional page hook."""

from __future__ import annotations

import pytest

from swqos_core import plugins
from swqos_core.errors import ConfigError
from swqos_dashboard.service import DashboardService


def test_the_plugin_loads_and_names_its_distribution():
    _pm, loaded, problems = plugins.load_plugins(["dashboard"])
    assert problems == []
    assert [p.distribution for p in loaded if p.name == "dashboard"] == ["swqos-dashboard"]


def test_the_service_is_built_from_its_settings(swqos_layer):
    service = swqos_layer("service", "dashboard", {"traffic_seconds": 600, "recent_decisions": 50},
                          plugins_to_load=["dashboard"])
    assert isinstance(service, DashboardService)
    assert len(service.dashboard.traffic.buckets) == 600 and service.dashboard.recent.ring.maxlen == 50


@pytest.mark.parametrize("settings,message", [
    ({"traffic_seconds": 10}, "traffic_seconds must be between 60 and 86400"),
    ({"recent_decisions": 10_000_000}, "recent_decisions must be between"),
    ({"max_body_bytes": 10}, "max_body_bytes must be between"),
    ({"csrf_max_age_seconds": 1}, "csrf_max_age_seconds must be between"),
    ({"csrf_used_max": 1}, "csrf_used_max must be between"),
    ({"poll_seconds": 0}, "poll_seconds must be between"),
    ({"ring": 5}, "ring"),
])
def test_bad_settings_stop_startup_with_the_key_named(swqos_layer, settings, message):
    with pytest.raises(ConfigError, match=message):
        swqos_layer("service", "dashboard", settings, plugins_to_load=["dashboard"])


async def test_the_dashboard_without_the_admin_listener_stops_startup(tmp_path):
    from swqos_testing.stack import running_stack

    cfg = {"swqos": {"plugins": ["auth_jwt", "ops", "dashboard"]}, "pipeline": {"services": ["dashboard"]}}
    with pytest.raises(ConfigError, match=r"'dashboard' is served by the admin listener; add 'admin'"):
        async with running_stack(tmp_path, proxy=cfg, start_enclave=False):
            pytest.fail("started a dashboard with nothing to serve it")
