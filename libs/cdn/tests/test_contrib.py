"""The kit's contributions to a host-proxy: swqos_cdn_* metrics, reload-cdn, the cdn status section.

Built from a real config with two CDN plugins loaded (a selected one and a standby), so one owner
for the shared names is checked too.
"""

import asyncio
import json

import pytest

from swqos_cdn import EdgeResolver
from swqos_cdn.contrib import FAMILIES
from swqos_core import config, plugins
from swqos_core.extensions import Actor, AdminError, AdminOperation, MetricsCollector
from swqos_testing.conformance import RangeDocumentServer

ACTOR = Actor("token", "operator")


def app_for(tmp_path, client_ip, *, refresh_url=None):
    cloudflare = f'refresh_url = "{refresh_url}"\n' if refresh_url else ""
    (tmp_path / "proxy.toml").write_text(f"""
[swqos]
plugins = ["cdn_cloudflare", "cdn_cloudfront"]
[proxy]
tls_cert = "tls.crt"
tls_key = "tls.key"
enclave = "unix:///tmp/enclave.sock"
[pipeline]
auth = []
client_ip = {json.dumps(client_ip)}
[layers.client_ip.cloudflare]
{cloudflare}
[layers.client_ip.cloudfront]
client_header = "viewer-address"
""")
    app = plugins.build_app(config.load(tmp_path / "proxy.toml"))
    plugins.collect_contributions(app)
    return app


def samples(app):
    (_owner, collector), = [(o, c) for o, c in app.contributions.metrics if o == "cdn"]
    assert isinstance(collector, MetricsCollector)
    return {(name, labels): value for name, labels, value in collector.collect()}


def test_one_owner_for_the_cdn_metrics_with_two_cdn_plugins_loaded(tmp_path):
    app = app_for(tmp_path, ["cloudflare", "cloudfront"])
    owners = [o for o, c in app.contributions.metrics if {f.name for f in c.families} & {f.name for f in FAMILIES}]
    assert owners == ["cdn"]
    got = samples(app)
    cf = dict(app.layers["client_ip"])["cloudflare"]
    assert got[("swqos_cdn_ranges", ("cloudflare", "ipv4"))] == len(cf.snapshot.ipv4) == 15
    assert got[("swqos_cdn_ranges", ("cloudflare", "ipv6"))] == len(cf.snapshot.ipv6) == 7
    assert got[("swqos_cdn_ranges_serial", ("cloudfront",))] == dict(app.layers["client_ip"])["cloudfront"].snapshot.serial
    assert got[("swqos_cdn_ranges_age_seconds", ("cloudflare",))] > 0
    assert got[("swqos_cdn_refreshes", ("cloudflare", "updated"))] == 0
    declared = {f.name: f.labels for f in FAMILIES}
    assert all(len(labels) == len(declared[name]) for name, labels in got)  # every sample fits its family


def test_status_section_shows_source_and_age(tmp_path):
    app = app_for(tmp_path, ["cloudflare"])
    owner, report = app.contributions.status["cdn"]
    assert owner == "cdn"
    section = report()
    assert section["providers"] == ["cloudflare", "cloudfront"]
    (name, entry), = section["resolvers"].items()
    assert name == "cloudflare"
    assert entry["source"] == "https://api.cloudflare.com/client/v4/ips"
    assert entry["fetched_at"] == "2026-01-09T00:00:00Z"  # the shipped snapshot
    cf = dict(app.layers["client_ip"])["cloudflare"]
    fetched = 1767916800  # 2026-01-09T00:00:00Z
    assert cf.describe(now=fetched + 3600)["age_seconds"] == 3600
    assert entry["age_seconds"] > 0 and entry["require_cdn"] is True and entry["allow_non_global"] is False
    json.dumps(section)  # JSON-serializable, as the status view needs


def cloudflare_api(v4, v6, etag):
    return json.dumps({"result": {"ipv4_cidrs": v4, "ipv6_cidrs": v6, "etag": etag},
                       "success": True, "errors": [], "messages": []}).encode()


def test_reload_cdn_refreshes_every_edge_resolver_and_counts(tmp_path):
    with RangeDocumentServer() as srv:
        app = app_for(tmp_path, ["cloudflare"], refresh_url=srv.url)
        owner, op = app.contributions.admin_operations["reload-cdn"]
        assert owner == "cdn" and isinstance(op, AdminOperation) and op.mutating
        srv.body = cloudflare_api(["45.0.0.0/24"], ["2a0f:1234::/32"], "new")
        out = asyncio.run(op.handler({}, ACTOR))
        assert out["resolvers"]["cloudflare"]["changed"] is True
        assert out["resolvers"]["cloudflare"]["ranges"]["ipv4"] == 1
        srv.body = b"<html>down</html>"
        out = asyncio.run(op.handler({}, ACTOR))
        assert out["resolvers"]["cloudflare"]["changed"] is False
        assert out["resolvers"]["cloudflare"]["ranges"]["ipv4"] == 1  # the list in use stayed
    got = samples(app)
    assert got[("swqos_cdn_refreshes", ("cloudflare", "updated"))] == 1
    assert got[("swqos_cdn_refreshes", ("cloudflare", "refused"))] == 1
    assert got[("swqos_cdn_ranges", ("cloudflare", "ipv4"))] == 1


def test_reload_cdn_refuses_parameters(tmp_path):
    _, op = app_for(tmp_path, ["cloudflare"]).contributions.admin_operations["reload-cdn"]
    with pytest.raises(AdminError) as info:
        asyncio.run(op.handler({"provider": "cloudflare"}, ACTOR))
    assert info.value.status == 400 and "no parameters" in info.value.message


def test_reload_cdn_without_a_selected_cdn_resolver_says_so(tmp_path):
    app = app_for(tmp_path, [])  # both plugins loaded as standbys, none selected
    assert not [obj for _, obj in app.layers.get("client_ip", []) if isinstance(obj, EdgeResolver)]
    _, op = app.contributions.admin_operations["reload-cdn"]
    with pytest.raises(AdminError) as info:
        asyncio.run(op.handler({}, ACTOR))
    assert info.value.status == 501 and "[pipeline] client_ip" in info.value.message
