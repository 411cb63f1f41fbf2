"""The sample production files in deploy/ are valid for the code as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swqos_core import config, plugins
from swqos_ops.settings import AdminSettings, AuditSettings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


@pytest.mark.parametrize("name,process", [("proxy.toml", "proxy"), ("enclave.toml", "enclave")])
def test_sample_configs_validate(name, process):
    cfg = config.load(DEPLOY / name, process=process)
    pm, loaded, problems = plugins.load_plugins(cfg.core.plugins)
    assert problems == []
    registry = plugins.collect_registrations(pm, loaded)
    plugins.select(cfg, registry)  # raises ConfigError listing any unknown key or bad value
    assert cfg.core.allow_test_plugins is False


def test_sample_proxy_keeps_admin_private_and_audits():
    cfg = config.load(DEPLOY / "proxy.toml", process="proxy")
    pm, loaded, _ = plugins.load_plugins(cfg.core.plugins)
    chosen = plugins.select(cfg, plugins.collect_registrations(pm, loaded))
    services = {sel.registration.name: sel.settings for sel in chosen["service"]}
    assert list(services) == ["audit", "admin"]  # the audit log first: the admin listener writes to it
    admin, audit = services["admin"], services["audit"]
    assert isinstance(admin, AdminSettings) and admin.listen.startswith("unix://") and admin.client_ca is None
    assert admin.token_authenticator == "api_token" and admin.token_auth["accept_roles"] == ["admin"]
    assert isinstance(audit, AuditSettings) and str(audit.path).startswith("/var/log/swqos/")
    # Revocations and bans survive a restart: a persistent store in the systemd StateDirectory.
    assert cfg.pipeline.store == "sqlite"
    store = chosen["store"][0].settings
    assert str(store.path).startswith("/var/lib/swqos/")


def test_units_run_what_the_docs_say():
    proxy = (DEPLOY / "systemd" / "swqos-proxy.service").read_text()
    assert "swqos --log-format json serve --config /etc/swqos/proxy.toml" in proxy
    kms = (DEPLOY / "systemd" / "swqos-vsock-proxy-kms.service").read_text()
    enclave = (DEPLOY / "enclave.toml").read_text()
    assert "vsock-proxy 8000 kms.us-east-1.amazonaws.com 443" in kms and "vsock_proxy_port = 8000" in enclave
    assert "--enclave-cid 16" in (DEPLOY / "systemd" / "swqos-enclave.service").read_text()
    assert 'enclave = "vsock://16:5005"' in (DEPLOY / "proxy.toml").read_text()
    policy = json.loads((DEPLOY / "kms-key-policy.json").read_text())
    assert any("kms:RecipientAttestation:PCR0" in json.dumps(s.get("Condition", {})) for s in policy["Statement"])
