"""The TOML file of each process: core sections, and where each layer's own section lives.

Host-proxy::

    [swqos]
    plugins = ["payload_tls_cv", "auth_jwt", "ratelimit"]   # entry-point names; nothing else is imported
    [proxy]
    listen = "127.0.0.1:8443"
    tls_cert = "tls.crt"
    tls_key = "tls.key"
    enclave = "unix:///run/swqos/enclave.sock"
    [pipeline]
    auth = ["jwt"]
    [layers.auth.jwt]
    ...

Enclave::

    [swqos]
    plugins = ["payload_tls_cv"]
    [enclave]
    listen = "unix:///run/swqos/enclave.sock"
    expected_public_key = "<base58>"
    [pipeline]
    payload_match = "tls_cv"
    key_provider = "file"
    signer = "ed25519"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from swqos_core import schema
from swqos_core.errors import ConfigError

Process = Literal["proxy", "enclave"]


@dataclass
class CoreSettings:
    """``[swqos]``"""

    plugins: list[str] = field(default_factory=list)
    #: Test doubles (fake KMS, allow-all auth) can only be selected when this is true.
    allow_test_plugins: bool = False


@dataclass
class ProxySettings:
    """``[proxy]``"""

    tls_cert: Path
    tls_key: Path
    enclave: str
    listen: str = "127.0.0.1:8443"
    #: Serialized request bodies above this are refused before any other work.
    max_request_bytes: int = 1024
    #: Server-side deadline; a caller's shorter deadline wins.
    deadline_ms: int = 100
    #: Enclave back-pressure: requests in flight to the enclave at once; past it, refuse at once.
    max_enclave_inflight: int = 64
    #: Optional PEM CA: require a client certificate it signed (e.g. Cloudflare Authenticated Origin Pulls).
    client_ca: Path | None = None
    #: Seconds between enclave health pings.
    enclave_ping_interval: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_request_bytes <= 64 * 1024:
            raise ValueError("max_request_bytes must be between 1 and 65536")
        if not 1 <= self.deadline_ms <= 10_000:
            raise ValueError("deadline_ms must be between 1 and 10000")
        if not 1 <= self.max_enclave_inflight <= 100_000:
            raise ValueError("max_enclave_inflight must be between 1 and 100000")


@dataclass
class ProxyPipeline:
    """``[pipeline]`` of the host-proxy. Lists run in the order written."""

    auth: list[str]
    client_ip: list[str] = field(default_factory=lambda: ["peer"])
    rate_limit: list[str] = field(default_factory=list)
    validate: list[str] = field(default_factory=lambda: ["limits"])
    revocation: list[str] = field(default_factory=list)
    #: Background services (admin listener, audit log, release check), started in this order.
    services: list[str] = field(default_factory=list)


@dataclass
class EnclaveSettings:
    """``[enclave]``"""

    listen: str
    #: base58 Ed25519 public key; the enclave refuses to start if the loaded key differs.
    expected_public_key: str | None = None
    #: Largest frame the enclave reads; Firedancer's keyguard uses 2048.
    max_frame_bytes: int = 2048
    #: Requests being processed at once per connection; more is a protocol error.
    max_inflight: int = 256
    max_connections: int = 16


@dataclass
class EnclavePipeline:
    """``[pipeline]`` of the enclave: exactly one implementation each."""

    payload_match: str
    key_provider: str
    signer: str = "ed25519"


#: ``[pipeline]`` keys that are not spelled as their layer kind (``services = [...]`` selects kind ``service``).
PIPELINE_KEY_KINDS = {"services": "service"}

PROCESS_SECTIONS: dict[Process, tuple[str, type, type]] = {
    "proxy": ("proxy", ProxySettings, ProxyPipeline),
    "enclave": ("enclave", EnclaveSettings, EnclavePipeline),
}


@dataclass
class AppConfig:
    process: Process
    path: Path | None
    base_dir: Path
    core: CoreSettings
    settings: Any  # ProxySettings | EnclaveSettings
    pipeline: Any  # ProxyPipeline | EnclavePipeline
    #: Raw ``[layers.<kind>.<name>]`` tables, validated later against each registration's model.
    layers: dict[str, dict[str, dict[str, Any]]]

    def selected(self) -> dict[str, list[str]]:
        """Layer kind → implementation names chosen in ``[pipeline]``, in order."""
        out: dict[str, list[str]] = {}
        for key, value in vars(self.pipeline).items():
            out[PIPELINE_KEY_KINDS.get(key, key)] = list(value) if isinstance(value, list) else [value]
        return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def detect_process(data: dict[str, Any]) -> Process | None:
    has = [p for p, (section, _, _) in PROCESS_SECTIONS.items() if section in data]
    return has[0] if len(has) == 1 else None


def parse(data: dict[str, Any], *, process: Process | None = None, path: Path | None = None) -> AppConfig:
    """Validate the core sections of a config; raise :class:`ConfigError` listing every problem."""
    where = str(path) if path else "<config>"
    base_dir = path.parent if path else Path.cwd()
    problems: list[str] = []
    process = process or detect_process(data)
    if process is None:
        raise ConfigError(f"{where}: expected exactly one of the sections [proxy] or [enclave]")
    section, settings_cls, pipeline_cls = PROCESS_SECTIONS[process]
    allowed = {"swqos", section, "pipeline", "layers"}
    for key in data:
        if key not in allowed:
            problems.append(f"{where}: unknown section [{key}] (a {process} config has: {', '.join(sorted(allowed))})")
    core = schema.build(CoreSettings, data.get("swqos", {}), where="[swqos]", base_dir=base_dir, problems=problems)
    if section not in data:
        problems.append(f"{where}: missing section [{section}]")
    settings = schema.build(settings_cls, data.get(section, {}), where=f"[{section}]", base_dir=base_dir, problems=problems)
    pipeline = schema.build(pipeline_cls, data.get("pipeline", {}), where="[pipeline]", base_dir=base_dir, problems=problems)
    layers = data.get("layers", {})
    if not isinstance(layers, dict) or not all(
        isinstance(v, dict) and all(isinstance(t, dict) for t in v.values()) for v in layers.values()
    ):
        problems.append("[layers]: expected tables [layers.<kind>.<name>]")
        layers = {}
    if problems:
        raise ConfigError(problems)
    return AppConfig(process, path, base_dir, core, settings, pipeline, layers)


def load(path: str | Path, *, process: Process | None = None) -> AppConfig:
    path = Path(path).resolve()
    return parse(read_toml(path), process=process, path=path)
