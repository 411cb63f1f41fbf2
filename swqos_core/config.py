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
    #: A TLS handshake not complete within this is dropped (slow-handshake floods).
    tls_handshake_timeout_ms: int = 5000
    #: Open connections at once; past it new connections are closed at accept (grpc core's
    #: connection quota). A memory bound (about 20-45 KB per idle connection, measured), set well
    #: above an idle flood that the handshake timeout clears: CDN edges need few connections.
    max_connections: int = 8192
    #: A connection with no call for this long gets a GOAWAY.
    connection_idle_s: float = 300.0
    #: Any connection is recycled after this long (GOAWAY, then ``connection_age_grace_s``).
    connection_max_age_s: float = 3600.0
    connection_age_grace_s: float = 10.0
    #: HTTP/2 streams open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    max_streams_per_connection: int = 100
    #: Calls being handled at once across all connections; past it, RESOURCE_EXHAUSTED at once.
    max_concurrent_rpcs: int = 1024
    #: Seconds between returns of freed heap memory to the kernel (0: never); see swqos_core/memory.py.
    memory_trim_interval_s: float = 10.0
    #: glibc malloc arenas (fewer arenas: less memory kept after a flood; 0 leaves glibc's default).
    malloc_arenas: int = 2
    #: Host-proxy processes sharing ``listen`` under one ``swqos serve`` supervisor (SO_REUSEPORT
    #: among its workers only); more than 1 needs a shared ``[pipeline] store`` and a fixed port.
    workers: int = 1
    #: With ``workers`` > 1: services (of ``[pipeline] services``) run in worker 0 only, like an
    #: admin listener (one address, one process); every other service runs in every worker.
    first_worker_services: list[str] = field(default_factory=list)
    #: Time each stage of one call in this many, for the stage-duration metric (1: every call;
    #: 0: never). Every call is still counted, and its end-to-end latency measured.
    stage_timing_every: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.stage_timing_every <= 1_000_000:
            raise ValueError("stage_timing_every must be between 0 and 1000000")
        if not 1 <= self.workers <= 256:
            raise ValueError("workers must be between 1 and 256")
        if not 0 <= self.memory_trim_interval_s <= 3600 or not 0 <= self.malloc_arenas <= 64:
            raise ValueError("memory_trim_interval_s must be in [0, 3600] and malloc_arenas in [0, 64]")
        if not 100 <= self.tls_handshake_timeout_ms <= 60_000:
            raise ValueError("tls_handshake_timeout_ms must be between 100 and 60000")
        if not 1 <= self.max_connections <= 1_000_000:
            raise ValueError("max_connections must be between 1 and 1000000")
        if not 1 <= self.connection_idle_s <= 86_400 or not 1 <= self.connection_max_age_s <= 7 * 86_400:
            raise ValueError("connection_idle_s must be in [1, 86400] and connection_max_age_s in [1, 604800]")
        if not 0 <= self.connection_age_grace_s <= 600:
            raise ValueError("connection_age_grace_s must be between 0 and 600")
        if not 1 <= self.max_streams_per_connection <= 10_000:
            raise ValueError("max_streams_per_connection must be between 1 and 10000")
        if not 1 <= self.max_concurrent_rpcs <= 1_000_000:
            raise ValueError("max_concurrent_rpcs must be between 1 and 1000000")
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
    #: Where limits, bans and admin changes live (``memory``; ``sqlite`` or ``redis`` from swqos-state).
    store: str = "memory"


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
    #: Open connections at once; a new one past this closes the least recently active one.
    max_connections: int = 16
    #: A frame's bytes must all arrive within this once its first byte has.
    frame_timeout_ms: int = 2000
    #: A connection with no frame for this long is closed (the host-proxy pings every second).
    idle_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_connections <= 1024:
            raise ValueError("max_connections must be between 1 and 1024")
        if not 10 <= self.frame_timeout_ms <= 60_000:
            raise ValueError("frame_timeout_ms must be between 10 and 60000")
        if not 2 <= self.idle_timeout_s <= 3600:
            raise ValueError("idle_timeout_s must be between 2 and 3600")


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
            names = value if isinstance(value, list) else [value]
            out[PIPELINE_KEY_KINDS.get(key, key)] = [n for n in names if isinstance(n, str)]
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


def parse(data: dict[str, Any], *, process: Process | None = None, path: Path | None = None,
          problems: list[str] | None = None) -> AppConfig:
    """Validate the core sections of a config; raise :class:`ConfigError` listing every problem.

    With ``problems`` given, append to it instead of raising and return a best-effort config, so
    ``swqos config check`` goes on to check every other section in the same pass.
    """
    where = str(path) if path else "<config>"
    base_dir = path.parent if path else Path.cwd()
    collect = problems is not None
    problems = [] if problems is None else problems
    detected = detect_process(data)
    if process is not None and detected is not None and detected != process:
        command = "swqos enclave --config" if detected == "enclave" else "swqos serve --config"
        raise ConfigError(f"{where} is {'an enclave' if detected == 'enclave' else 'a host-proxy'} configuration "
                          f"([{detected}] section): run it with {command} {where}")
    process = process or detected
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
    before = len(problems)
    settings = schema.build(settings_cls, data.get(section, {}), where=f"[{section}]", base_dir=base_dir, problems=problems)
    pipeline = schema.build(pipeline_cls, data.get("pipeline", {}), where="[pipeline]", base_dir=base_dir, problems=problems)
    if process == "proxy" and len(problems) == before:  # both sections are valid on their own
        problems += _worker_problems(settings, pipeline)
    layers = data.get("layers", {})
    if not isinstance(layers, dict) or not all(
        isinstance(v, dict) and all(isinstance(t, dict) for t in v.values()) for v in layers.values()
    ):
        problems.append("[layers]: expected tables [layers.<kind>.<name>]")
        layers = {}
    if problems and not collect:
        raise ConfigError(problems)
    return AppConfig(process, path, base_dir, core, settings, pipeline, layers)


def _worker_problems(settings: ProxySettings, pipeline: ProxyPipeline) -> list[str]:
    out = [f"[proxy] first_worker_services: {name!r} is not in [pipeline] services"
           for name in settings.first_worker_services if name not in pipeline.services]
    if settings.workers > 1:
        if pipeline.store == "memory":  # each worker would keep its own limits, bans and admin changes
            out.append(f"[proxy] workers = {settings.workers} needs a shared state store: set [pipeline] store "
                       "to \"sqlite\" or \"redis\" (swqos-state); the memory store is per process")
        if settings.listen.rsplit(":", 1)[-1] == "0":
            out.append("[proxy] workers > 1 needs a fixed port in [proxy] listen, not port 0")
    return out


def load(path: str | Path, *, process: Process | None = None, problems: list[str] | None = None) -> AppConfig:
    path = Path(path).resolve()
    return parse(read_toml(path), process=process, path=path, problems=problems)
