"""``swqos config check`` with the first-party plugins' own checks (``swqos_check_config``)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

from swqos_core.check import check
from swqos_dev import devstack

ROOT = Path(__file__).parents[1]


def test_the_dev_stack_config_is_valid_on_loopback_and_its_issuer_refused_when_strict(tmp_path):
    dev = devstack.prepare(tmp_path / "dev", listen="127.0.0.1:8443")
    relaxed = check(dev.config)
    assert relaxed.problems == [], relaxed.problems
    strict = check(dev.config, strict=True)
    assert any("'swqos-dev' is the development stack's issuer" in p for p in strict.problems)


def test_a_cdn_resolver_that_does_not_require_the_cdn_is_refused_when_strict(tmp_path):
    dev = devstack.prepare(tmp_path / "dev", listen="127.0.0.1:8443")
    data = tomllib.loads(dev.config.read_text())
    data["swqos"]["plugins"].append("cdn_cloudflare")
    data["pipeline"]["client_ip"] = ["cloudflare"]
    data.setdefault("layers", {})["client_ip"] = {"cloudflare": {"require_cdn": False, "allow_non_global": True}}
    path = tmp_path / "cdn.toml"
    path.write_text(tomli_w.dumps(data))
    assert not [p for p in check(path).problems if "require_cdn" in p]
    strict = check(path, strict=True).problems
    assert any("require_cdn = false" in p for p in strict)
    assert any("allow_non_global = true is a staging setting" in p for p in strict)


def test_the_shipped_enclave_sample_fails_on_its_placeholders(tmp_path):
    problems = check(ROOT / "deploy" / "enclave.toml").problems
    assert any("key_id" in p and "REPLACE" in p for p in problems)
    assert any("expected_pcrs" in p and "not hex" in p for p in problems)
    assert not any("listen" in p for p in problems)  # vsock://-1:5005 (any CID) is a valid enclave address


def test_the_nitro_provider_names_a_missing_sealed_key_and_a_malformed_key_id(tmp_path):
    data = tomllib.loads((ROOT / "deploy" / "enclave.toml").read_text())
    nitro = data["layers"]["key_provider"]["nitro"]
    key = "5wd9aHMZbyUWK8UXbK5jnBz5mYfBAr5jzuCmQxeeyp9E"
    data["enclave"]["expected_public_key"] = nitro["expected_public_key"] = key
    nitro["key_id"] = "not-a-key"
    nitro["ciphertext_file"] = str(tmp_path / "missing.kms")
    nitro["expected_pcrs"] = {"0": ["ab" * 48]}
    path = tmp_path / "enclave.toml"
    path.write_text(tomli_w.dumps(data))
    problems = check(path).problems
    assert any("missing.kms does not exist" in p and "swqos kms seal" in p for p in problems), problems
    assert any("key_id = 'not-a-key' is not a KMS key ARN" in p for p in problems)
