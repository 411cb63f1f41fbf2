"""``swqos config check`` finds what startup would, in one pass, one line per problem."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nacl.signing import SigningKey

from swqos_core.check import check

ROOT = Path(__file__).parents[2]


def write_tls(directory: Path, name: str = "tls") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def proxy_toml(tmp_path: Path, *, listen="127.0.0.1:8443", extra="", cert="tls.crt", key="tls.key") -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(f"""
[swqos]
plugins = []
[proxy]
listen = "{listen}"
tls_cert = "{cert}"
tls_key = "{key}"
enclave = "unix:///run/swqos/enclave.sock"
[pipeline]
auth = []
{extra}
""")
    return path


@pytest.fixture
def tls(tmp_path):
    return write_tls(tmp_path)


def test_a_valid_loopback_config_passes_and_names_strict_rules_as_warnings(tmp_path, tls):
    report = check(proxy_toml(tmp_path))
    assert report.problems == [] and report.strict is False
    assert any("rate_limit is empty" in w for w in report.warnings)


def test_missing_tls_files_are_named(tmp_path):
    report = check(proxy_toml(tmp_path, cert="nope.crt", key="nope.key"))
    assert any("nope.crt" in p and "cannot read" in p for p in report.problems)


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path, tls):
    write_tls(tmp_path, "other")
    report = check(proxy_toml(tmp_path, key="other.key"))
    assert any("is not the key of the certificate" in p for p in report.problems)


def test_problems_in_proxy_do_not_hide_the_other_sections_and_leak_no_python_errors(tmp_path, tls):
    path = proxy_toml(tmp_path, extra='[layers.validate.limits]\nmax_payload_bytes = 1\ncolour = "blue"\n')
    path.write_text(path.read_text().replace('listen = "127.0.0.1:8443"', 'listen = "127.0.0.1:8443"\n'
                                             'max_request_bytes = "big"'))
    report = check(path)
    assert any("max_request_bytes" in p and "expected an integer" in p for p in report.problems)
    assert any("unknown key 'colour'" in p for p in report.problems)
    assert not any("not supported between" in p for p in report.problems)
    assert len(report.problems) == len(set(report.problems))


def test_a_public_listener_makes_the_unsafe_setups_errors(tmp_path, tls):
    report = check(proxy_toml(tmp_path, listen="0.0.0.0:8443"))
    assert report.strict is True
    for rule in ("rate_limit is empty", "no CDN resolver", "revocation is empty", "no \"audit\"",
                 "store is \"memory\": a restart forgets every admin change"):
        assert any(rule in p for p in report.problems), rule
    relaxed = check(proxy_toml(tmp_path, listen="0.0.0.0:8443"), strict=False)
    assert relaxed.problems == [] and len(relaxed.warnings) == 5


def test_test_plugins_allowed_is_an_error_when_strict(tmp_path, tls):
    path = proxy_toml(tmp_path)
    path.write_text(path.read_text().replace("plugins = []", "plugins = []\nallow_test_plugins = true"))
    assert any("allow_test_plugins" in p for p in check(path, strict=True).problems)


@pytest.mark.parametrize("value, what", [
    ("REPLACE_ME", "REPLACE placeholder"),
    ("11111111111111111111111111111111", "all-ones placeholder"),
    ("arn:aws:kms:us-east-1:111122223333:key/abc", "example account id"),
    ("https://market.example", "example host"),
])
def test_placeholders_from_the_samples_are_refused(tmp_path, tls, value, what):
    path = proxy_toml(tmp_path, extra=f'[layers.validate.limits]\nnote = "{value}"\n')
    assert any(what in p for p in check(path).problems)


def enclave_toml(tmp_path: Path, key_path: Path, expected: str) -> Path:
    path = tmp_path / "enclave.toml"
    path.write_text(f"""
[swqos]
plugins = ["payload_tls_cv"]
[enclave]
listen = "unix://{tmp_path}/e.sock"
expected_public_key = "{expected}"
[pipeline]
payload_match = "tls_cv"
key_provider = "file"
[layers.key_provider.file]
path = "{key_path}"
""")
    return path


def write_keypair(path: Path, mode: int) -> None:
    seed = os.urandom(32)
    path.write_text(json.dumps(list(seed + bytes(SigningKey(seed).verify_key))))
    path.chmod(mode)


def test_enclave_key_file_mode_and_expected_key_are_checked(tmp_path):
    key = tmp_path / "id.json"
    write_keypair(key, 0o644)
    report = check(enclave_toml(tmp_path, key, "notbase58!!"))
    assert any("expected_public_key" in p and "notbase58!!" in p for p in report.problems)
    assert any(str(key) in p and "chmod 600" in p for p in report.problems)


def test_a_missing_key_file_is_named(tmp_path):
    report = check(enclave_toml(tmp_path, tmp_path / "missing.json", "11111111111111111111111111111112"))
    assert any("missing.json" in p and "does not exist" in p for p in report.problems)


def swqos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swqos_core.cli", *args], capture_output=True, text=True, timeout=60)


def test_exit_codes_are_0_valid_1_invalid_2_usage(tmp_path, tls):
    assert swqos("config", "check", str(proxy_toml(tmp_path))).returncode == 0
    bad = swqos("config", "check", str(proxy_toml(tmp_path, cert="gone.crt")))
    assert bad.returncode == 1 and "gone.crt" in bad.stderr and "Traceback" not in bad.stderr
    assert swqos("config", "check").returncode == 2
    missing = swqos("config", "check", str(tmp_path / "absent.toml"))
    assert missing.returncode == 1 and "absent.toml" in missing.stderr


def test_serve_on_an_enclave_config_says_to_use_swqos_enclave(tmp_path):
    key = tmp_path / "id.json"
    write_keypair(key, 0o600)
    out = swqos("serve", "--config", str(enclave_toml(tmp_path, key, "11111111111111111111111111111112")))
    assert out.returncode == 1 and "swqos enclave --config" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["proxy.toml", "enclave.toml"])
def test_the_shipped_samples_fail_until_their_placeholders_are_replaced(name):
    report = check(ROOT / "deploy" / name)
    placeholder_lines = [p for p in report.problems if "replace it with the real value" in p]
    assert placeholder_lines, f"deploy/{name} must not pass as shipped"
