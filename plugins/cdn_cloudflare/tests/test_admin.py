"""The kit's contributions for the cloudflare resolver through the real stack and the operations
plugin's admin API: `reload-cdn`, the `swqos_cdn_*` metrics on /metrics, the `cdn` status section."""

import json

import pytest

swqos_ops_testing = pytest.importorskip("swqos_ops.testing")  # the admin API is the swqos-ops distribution

from swqos_auth_jwt.api_tokens import create_token  # noqa: E402
from swqos_testing.conformance import RangeDocumentServer  # noqa: E402
from swqos_testing.stack import running_stack  # noqa: E402

admin, metrics_text, ops_config, sample = (swqos_ops_testing.admin, swqos_ops_testing.metrics_text,
                                           swqos_ops_testing.ops_config, swqos_ops_testing.sample)


def proxy(tmp_path, store, refresh_url):
    return ops_config(tmp_path, store, plugins=["auth_jwt", "ratelimit", "cdn_cloudflare"],
                     pipeline={"rate_limit": ["gcra"], "client_ip": ["cloudflare"]},
                     layers={"rate_limit": {"gcra": swqos_ops_testing.OPEN_GCRA},
                             "client_ip": {"cloudflare": {"extra_trusted_ranges": ["127.0.0.0/8"],
                                                          "refresh_url": refresh_url}}})


def api(v4, v6, etag):
    return json.dumps({"result": {"ipv4_cidrs": v4, "ipv6_cidrs": v6, "etag": etag},
                       "success": True, "errors": [], "messages": []}).encode()


async def test_reload_cdn_metrics_and_status_through_the_admin_api(tmp_path):
    store = tmp_path / "admin-tokens.json"
    token, _ = create_token(store, "ops-admin", "admin")
    with RangeDocumentServer() as srv:
        async with running_stack(tmp_path, proxy=proxy(tmp_path, store, srv.url)) as stack:
            text = await metrics_text(stack, token)
            assert sample(text, "swqos_cdn_ranges", layer="cloudflare", family="ipv4") == 15  # shipped list

            srv.body = b"<html>Bad gateway</html>"
            status, doc = await admin(stack, token, "reload-cdn")
            assert status == 200 and doc["resolvers"]["cloudflare"]["changed"] is False, doc

            srv.body = api(["45.0.0.0/24"], ["2a0f:1234::/32"], "new")
            status, doc = await admin(stack, token, "reload-cdn")
            assert status == 200 and doc["resolvers"]["cloudflare"]["changed"] is True, doc
            assert doc["resolvers"]["cloudflare"]["ranges"]["etag"] == "new"

            status, doc = await admin(stack, token, "reload-cdn", {"provider": "x"})
            assert status == 400 and "unknown parameter" in doc["error"], doc

            text = await metrics_text(stack, token)
            assert sample(text, "swqos_cdn_ranges", layer="cloudflare", family="ipv4") == 1
            assert sample(text, "swqos_cdn_refreshes_total", layer="cloudflare", outcome="updated") == 1
            assert sample(text, "swqos_cdn_refreshes_total", layer="cloudflare", outcome="refused") == 1
            status, doc = await admin(stack, token, "status")
            assert status == 200
            section = doc["sections"]["cdn"]["resolvers"]["cloudflare"]
            assert section["etag"] == "new" and section["source"] == srv.url and section["age_seconds"] >= 0
            assert section["refreshes"] == {"updated": 1, "unchanged": 0, "refused": 1, "failed": 0}
