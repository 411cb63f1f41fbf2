"""The example installs and is selected exactly as a third-party plugin would be: through its
``swqos.plugins`` entry point, by name in a TOML config, via swqos_core.plugins.build_app; and it
joins the shared ``swqos cdn`` command group."""

import importlib.metadata
import ipaddress

import pytest

from swqos_core import cli, config, plugins
from swqos_core.errors import ConfigError
from swqos_core.layers import ClientAddress
from swqos_testing.conformance.client_ip import head

CONFIG = """
[swqos]
plugins = ["cdn_fastly"]
[proxy]
tls_cert = "tls.crt"
tls_key = "tls.key"
enclave = "unix:///tmp/enclave.sock"
[pipeline]
auth = []
client_ip = ["fastly"]
[layers.client_ip.fastly]
client_ip_overwritten_by_service = true
"""


def test_entry_point_is_installed():
    eps = [ep for ep in importlib.metadata.entry_points(group="swqos.plugins") if ep.name == "cdn_fastly"]
    assert len(eps) == 1, "pip install -e examples/cdn_fastly"
    assert eps[0].value == "swqos_cdn_fastly.plugin"
    assert eps[0].dist.metadata["Name"] == "swqos-cdn-fastly"


async def test_selected_by_toml(tmp_path):
    (tmp_path / "config.toml").write_text(CONFIG)
    app = plugins.build_app(config.load(tmp_path / "config.toml"))
    assert [p.name for p in app.plugins if p.name != "builtin"] == ["cdn_fastly"]
    assert {p.distribution for p in app.plugins if p.name == "cdn_fastly"} == {"swqos-cdn-fastly"}
    (name, resolver), = app.layers["client_ip"]
    assert name == "fastly"
    got = await resolver.resolve(head("ipv4:151.101.1.57:443", [("fastly-client-ip", "81.2.69.4")]))
    assert got == ClientAddress(ipaddress.ip_address("81.2.69.4"), "fastly", "ipv4:151.101.1.57:443")


def test_not_imported_unless_listed(tmp_path):
    (tmp_path / "config.toml").write_text(CONFIG.replace('plugins = ["cdn_fastly"]', "plugins = []"))
    with pytest.raises(ConfigError, match="unknown implementation 'fastly'"):
        plugins.build_app(config.load(tmp_path / "config.toml"))


def test_missing_statement_fails_startup(tmp_path):
    (tmp_path / "config.toml").write_text(CONFIG.replace("client_ip_overwritten_by_service = true", ""))
    with pytest.raises(ConfigError, match="client_ip_overwritten_by_service"):
        plugins.build_app(config.load(tmp_path / "config.toml"))


def test_joins_the_swqos_cdn_command_group(capsys):
    rc = cli.main(["cdn", "render", "--provider", "fastly", "--format", "nftables", "--port", "443"])
    out = capsys.readouterr().out
    assert rc == 0 and "151.101.0.0/16" in out and "2a04:4e42::/32" in out
    rc = cli.main(["cdn", "render", "--provider", "nosuchcdn", "--format", "nftables"])
    err = capsys.readouterr().err
    assert rc == 2
    for name in ("cloudflare", "cloudfront", "fastly"):
        assert name in err
