"""``swqos config check``: everything startup checks, without binding or connecting.

One pass over the whole file: the core sections, every layer's settings, every file a layer or
the process loads (certificates and keys parsed, key files' modes), placeholder values left from
the shipped samples, then each plugin's own checks (``swqos_check_config``). In strict mode
(the default for a listener other hosts can reach) the unsafe setups of a public proxy are
errors too. Every problem is one line naming the file, key or value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from swqos_core import config, plugins
from swqos_core.errors import ConfigError
from swqos_core.identity import from_base58
from swqos_core.net import parse_listen
from swqos_core.state import ServiceState

#: Values that are placeholders in the shipped samples, never real settings.
_PLACEHOLDERS = (
    (re.compile(r"REPLACE", re.IGNORECASE), "a REPLACE placeholder"),
    (re.compile(r"^1{32,44}$"), "the all-ones placeholder key (base58 of 32 zero bytes)"),
    (re.compile(r"^0{40,}$"), "an all-zeros placeholder"),
    (re.compile(r"\b(111122223333|123456789012)\b"), "an AWS documentation example account id"),
    (re.compile(r"^https?://[^/]*\.example(?:[:/]|$)|\bexample\.(?:com|org|net)\b"), "a documentation example host"),
)
#: Implementations that do not make a public listener safe on their own.
_NOT_A_CDN = {"peer", "test_header"}


@dataclass
class Report:
    """The outcome of a check: ``problems`` make it invalid; ``warnings`` are strict-only rules when not strict."""

    path: Path
    process: str | None = None
    strict: bool = False
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    selected: dict[str, list[str]] = field(default_factory=dict)


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def placeholders(data: dict[str, Any]) -> list[str]:
    """One problem per value that is still a placeholder of the shipped samples."""
    found = []
    for where, text in _strings(data, ""):
        for pattern, what in _PLACEHOLDERS:
            if pattern.search(text):
                found.append(f"{where} = {text!r} is {what}: replace it with the real value")
                break
    return found


def _check_tls(cert: Path, key: Path, where: str) -> list[str]:
    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except OSError as exc:
        return [f"{where} tls_cert: cannot read {cert}: {exc.strerror}"]
    except ValueError:
        return [f"{where} tls_cert: {cert} is not a PEM certificate"]
    try:
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except OSError as exc:
        return [f"{where} tls_key: cannot read {key}: {exc.strerror}"]
    except (ValueError, TypeError):
        return [f"{where} tls_key: {key} is not an unencrypted PEM private key"]
    if private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            certificate.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        return [f"{where} tls_key: {key} is not the key of the certificate {cert}"]
    return []


def _check_ca(ca: Path, where: str) -> list[str]:
    try:
        x509.load_pem_x509_certificates(ca.read_bytes())
    except OSError as exc:
        return [f"{where}: cannot read {ca}: {exc.strerror}"]
    except ValueError:
        return [f"{where}: {ca} holds no PEM certificate"]
    return []


def _check_proxy(settings: config.ProxySettings) -> tuple[list[str], bool]:
    problems = []
    public = True
    try:
        public = not parse_listen(settings.listen, where="[proxy] listen").is_loopback
    except ValueError as exc:
        problems.append(str(exc))
    if settings.tls_cert is not None and settings.tls_key is not None:
        problems += _check_tls(settings.tls_cert, settings.tls_key, "[proxy]")
    if settings.client_ca is not None:
        problems += _check_ca(settings.client_ca, "[proxy] client_ca")
    if isinstance(settings.enclave, str):
        try:
            parse_listen(settings.enclave, where="[proxy] enclave", kinds=("unix", "vsock"))
        except ValueError as exc:
            problems.append(str(exc))
    return problems, public


def _check_enclave(settings: config.EnclaveSettings) -> list[str]:
    problems = []
    try:
        parse_listen(settings.listen, where="[enclave] listen", kinds=("unix", "vsock"))
    except (ValueError, TypeError) as exc:
        problems.append(str(exc))
    if settings.expected_public_key is not None:
        try:
            if len(from_base58(settings.expected_public_key)) != 32:
                raise ValueError("not 32 bytes")
        except ValueError as exc:
            problems.append(f"[enclave] expected_public_key = {settings.expected_public_key!r} is not a base58 "
                            f"Ed25519 public key ({exc})")
    return problems


def strict_rules(cfg: config.AppConfig) -> list[str]:
    """What makes a host-proxy that other hosts can reach unsafe (``--strict``)."""
    selected = cfg.selected()
    rules = []
    if not selected.get("rate_limit"):
        rules.append("[pipeline] rate_limit is empty: a public listener needs a rate limiter (e.g. [\"gcra\"])")
    if not set(selected.get("client_ip", [])) - _NOT_A_CDN:
        rules.append("[pipeline] client_ip has no CDN resolver: a public listener must sit behind the CDN "
                     "(e.g. [\"cloudflare\"], with require_cdn)")
    if not selected.get("revocation"):
        rules.append("[pipeline] revocation is empty: a public listener needs the kill switch (e.g. [\"https\"])")
    if "audit" not in selected.get("service", []):
        rules.append("[pipeline] services has no \"audit\": a public listener needs an audit log")
    if selected.get("store", ["memory"]) == ["memory"]:
        rules.append("[pipeline] store is \"memory\": a restart forgets every admin change (a revoked trader "
                     "signs again) and every ban; a public listener needs store = \"sqlite\" (or \"redis\" "
                     "for a fleet), from swqos-state")
    if cfg.core.allow_test_plugins:
        rules.append("[swqos] allow_test_plugins = true: test doubles may be selected")
    return rules


def check(path: str | Path, *, strict: bool | None = None) -> Report:
    """Check one config file; never raises for a bad config, never binds or connects."""
    report = Report(Path(path))
    try:
        data = config.read_toml(Path(path).resolve())
        report.problems += placeholders(data)
        cfg = config.parse(data, path=Path(path).resolve(), problems=report.problems)
    except ConfigError as exc:
        report.problems += exc.problems
        return report
    report.process, report.selected = cfg.process, cfg.selected()
    public = False
    if cfg.process == "proxy" and cfg.settings is not None:
        found, public = _check_proxy(cfg.settings)
        report.problems += found
    elif cfg.process == "enclave" and cfg.settings is not None:
        report.problems += _check_enclave(cfg.settings)
    report.strict = public if strict is None else strict
    app = _build(cfg, report.problems)
    if app is not None:
        report.problems += _plugin_checks(app, report.strict)
    if cfg.process == "proxy":
        rules = strict_rules(cfg)
        (report.problems if report.strict else report.warnings).extend(rules)
    report.problems = list(dict.fromkeys(report.problems))  # one line per problem
    return report


def _build(cfg: config.AppConfig, problems: list[str]) -> plugins.App | None:
    pm, loaded, load_problems = plugins.load_plugins(cfg.core.plugins)
    registry = plugins.collect_registrations(pm, loaded)
    registry.problems[:0] = load_problems
    try:
        chosen = plugins.select(cfg, registry)
    except ConfigError as exc:
        problems += exc.problems
        return None
    state = ServiceState("check") if cfg.process == "proxy" else None
    try:
        layers = plugins.build_all(cfg, chosen, state=state, process="cli")
    except ConfigError as exc:
        problems += exc.problems
        return None
    return plugins.App(cfg.process, cfg, pm, loaded, registry, layers, state)


def _plugin_checks(app: plugins.App, strict: bool) -> list[str]:
    found = []
    for name, result, exc in plugins.call_each(app.pm, "swqos_check_config", app=app, strict=strict):
        if exc is not None:
            found.append(f"{app.owner(name)}: swqos_check_config failed: {type(exc).__name__}: {exc}")
        elif result:
            found += [str(p) for p in result]
    return found
