"""The ``https`` and ``file`` revocation sources: background pollers around a :class:`KillSwitch`.

``start()`` applies the persisted manifest *before* returning (so a restart while halted is
still halted before the first request is served), then polls in the background: once at once,
then every ``poll_interval`` seconds. ``close()`` stops polling; it never lifts a halt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from swqos_core.errors import ConfigError
from swqos_core.killswitch import HALT_SOURCE
from swqos_core.killswitch.engine import Candidate, KillSwitch
from swqos_core.killswitch.fetch import FetchError, check_url, https_get, make_ssl_context
from swqos_core.killswitch.manifest import SCOPE_RE
from swqos_core.killswitch.signing import MAX_SIGNATURE_BYTES, PinnedKey
from swqos_core.killswitch.store import ManifestStore

if TYPE_CHECKING:
    from swqos_core.layers import BuildContext
    from swqos_core.state import ServiceState

#: Which halt-source names are taken on one ServiceState, so two selected sources never lift
#: each other's halt.
_claimed: weakref.WeakKeyDictionary[ServiceState, set[str]] = weakref.WeakKeyDictionary()


def _halt_source_for(state: ServiceState, name: str) -> str:
    taken = _claimed.setdefault(state, set())
    source = HALT_SOURCE if HALT_SOURCE not in taken else f"{HALT_SOURCE}:{name}"
    taken.add(source)
    return source


@dataclass(kw_only=True)
class _Common:
    #: PEM SubjectPublicKeyInfo of the ECDSA P-256 manifest key (cosign.pub).
    public_key: Path
    #: Hex SHA-256 of that key's DER SPKI (`swqos manifest keygen` prints it); must match.
    key_id: str
    #: Only manifests whose "scope" equals this apply (a staging manifest never halts prod).
    scope: str
    #: Directory for the last accepted manifest (created 0700). Must survive restarts.
    state_dir: Path
    poll_interval: float = 60.0
    #: Largest manifest accepted, in bytes.
    max_bytes: int = 64 * 1024
    #: What to do once the last good manifest has expired (or none was ever accepted).
    on_stale: Literal["halt", "serve"] = "halt"
    #: Log an alert every this many consecutive polls without a valid manifest.
    alert_after_failures: int = 3

    def _common_problems(self) -> list[str]:
        problems = []
        if not 0.05 <= self.poll_interval <= 3600:
            problems.append("poll_interval must be between 0.05 and 3600 seconds")
        if not 256 <= self.max_bytes <= 1024 * 1024:
            problems.append("max_bytes must be between 256 and 1048576")
        if not SCOPE_RE.match(self.scope or ""):
            problems.append("scope must be a short name ([A-Za-z0-9._:/-])")
        if len(self.key_id or "") != 64:
            problems.append("key_id must be 64 hex digits (swqos manifest keygen prints it)")
        return problems


@dataclass(kw_only=True)
class HttpsSourceSettings(_Common):
    """``[layers.revocation.https]``"""

    #: https:// URL of the manifest.
    url: str
    #: URL of its signature; default: url + ".sig".
    signature_url: str | None = None
    #: Optional second mirror (e.g. object storage behind the CDN), fetched on every poll too.
    mirror_url: str | None = None
    mirror_signature_url: str | None = None
    #: PEM CA bundle to verify the servers; default: the system's roots.
    ca_bundle: Path | None = None
    connect_timeout: float = 5.0
    total_timeout: float = 15.0

    def __post_init__(self) -> None:
        problems = self._common_problems()
        for u in (self.url, self.signature_url, self.mirror_url, self.mirror_signature_url):
            if u:
                problem = check_url(u)
                if problem:
                    problems.append(problem)
        if self.mirror_signature_url and not self.mirror_url:
            problems.append("mirror_signature_url without mirror_url")
        if not 0.01 <= self.connect_timeout <= 60 or not 0.01 <= self.total_timeout <= 300:
            problems.append("timeouts must be between 0.01 and 60 (connect) / 300 (total) seconds")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(kw_only=True)
class FileSourceSettings(_Common):
    """``[layers.revocation.file]``"""

    #: Path of the manifest file (e.g. copied in by an air-gapped process).
    path: Path
    #: Path of its signature; default: path + ".sig".
    signature_path: Path | None = None

    def __post_init__(self) -> None:
        problems = self._common_problems()
        if problems:
            raise ValueError("; ".join(problems))


class _PollingSource:
    """Shared lifecycle of both sources. Subclasses implement ``fetch()``."""

    def __init__(self, settings: _Common, state: ServiceState, name: str, logger: logging.Logger) -> None:
        try:
            pinned = PinnedKey.from_file(settings.public_key, settings.key_id)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"public_key: {exc}") from None
        self.settings = settings
        self.log = logger
        self.engine = KillSwitch(
            state=state,
            pinned=pinned,
            scope=settings.scope,
            store=ManifestStore(settings.state_dir, name),
            on_stale=settings.on_stale,
            halt_source=_halt_source_for(state, name),
            logger=logger,
            alert_after_failures=settings.alert_after_failures,
        )
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def fetch(self) -> tuple[list[Candidate], list[tuple[str, str, str]]]:
        raise NotImplementedError

    async def poll_once(self) -> str:
        """One poll, now. Never raises: any unexpected error counts as a failed poll."""
        started = datetime.now(UTC)
        try:
            candidates, failures = await self.fetch()
        except Exception as exc:  # fail closed: an unknown error is a failed fetch, not a pass
            self.log.exception("revocation poll failed")
            candidates, failures = [], [("poll", "unexpected", type(exc).__name__)]
        return self.engine.poll_result(candidates, failures, started=started)

    async def start(self) -> None:
        # Synchronous on purpose: the persisted halt is in force before start() returns.
        self.engine.restore()
        self._task = asyncio.create_task(self._run(), name=f"revocation-{type(self).__name__}")

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # never let the poller die silently: log and keep polling
                self.log.exception("revocation poller error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            self._wake.clear()

    def snapshot(self) -> dict[str, object]:
        """Counters and manifest version/age for the metrics exporter (see KillSwitch.snapshot)."""
        return self.engine.snapshot()

    def poll_now(self) -> None:
        """Ask the background poller to poll at once (admin API, SIGHUP)."""
        self._wake.set()

    async def close(self) -> None:
        self.engine.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class HttpsSource(_PollingSource):
    """Polls the manifest (and its signature) over HTTPS from one or two mirrors."""

    def __init__(self, settings: HttpsSourceSettings, state: ServiceState, name: str = "https",
                 logger: logging.Logger | None = None) -> None:
        super().__init__(settings, state, name, logger or logging.getLogger("swqos.revocation.https"))
        self.https = settings
        try:
            self.ssl_context = make_ssl_context(settings.ca_bundle)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"ca_bundle: {exc}") from None
        self.locations = [(settings.url, settings.signature_url or settings.url + ".sig")]
        if settings.mirror_url:
            self.locations.append((settings.mirror_url, settings.mirror_signature_url or settings.mirror_url + ".sig"))

    async def _get(self, url: str, cap: int) -> bytes:
        return await https_get(url, ssl_context=self.ssl_context, connect_timeout=self.https.connect_timeout,
                               total_timeout=self.https.total_timeout, max_bytes=cap)

    async def _fetch_pair(self, url: str, sig_url: str) -> Candidate:
        body, sig = await asyncio.gather(self._get(url, self.https.max_bytes), self._get(sig_url, MAX_SIGNATURE_BYTES))
        return Candidate(url, body, sig)

    async def fetch(self) -> tuple[list[Candidate], list[tuple[str, str, str]]]:
        results = await asyncio.gather(*(self._fetch_pair(u, s) for u, s in self.locations), return_exceptions=True)
        candidates: list[Candidate] = []
        failures: list[tuple[str, str, str]] = []
        for (url, _), res in zip(self.locations, results, strict=True):
            if isinstance(res, Candidate):
                candidates.append(res)
            elif isinstance(res, FetchError):
                failures.append((url, res.label, res.message))
            elif isinstance(res, BaseException):
                failures.append((url, "unexpected", type(res).__name__))
        return candidates, failures


class FileSource(_PollingSource):
    """Reads the manifest and its signature from local files (tests, air-gapped hosts)."""

    def __init__(self, settings: FileSourceSettings, state: ServiceState, name: str = "file",
                 logger: logging.Logger | None = None) -> None:
        super().__init__(settings, state, name, logger or logging.getLogger("swqos.revocation.file"))
        self.path = Path(settings.path)
        self.signature_path = Path(settings.signature_path or f"{settings.path}.sig")

    @staticmethod
    def _read(path: Path, cap: int) -> bytes:
        with path.open("rb") as fh:
            data = fh.read(cap + 1)
        if len(data) > cap:
            raise FetchError("oversize", f"{path}: more than the {cap}-byte cap")
        return data

    async def fetch(self) -> tuple[list[Candidate], list[tuple[str, str, str]]]:
        try:
            body = self._read(self.path, self.settings.max_bytes)
            sig = self._read(self.signature_path, MAX_SIGNATURE_BYTES)
        except FetchError as exc:
            return [], [(str(self.path), exc.label, exc.message)]
        except OSError as exc:
            return [], [(str(self.path), "read", f"{exc.filename}: {exc.strerror}")]
        return [Candidate(str(self.path), body, sig)], []


def _need_state(ctx: BuildContext) -> ServiceState:
    if ctx.state is None:
        raise ConfigError("a revocation source runs only in the host-proxy (no service state here)")
    return ctx.state


def build_https_source(settings: HttpsSourceSettings, ctx: BuildContext) -> HttpsSource:
    return HttpsSource(settings, _need_state(ctx), ctx.name, ctx.logger)


def build_file_source(settings: FileSourceSettings, ctx: BuildContext) -> FileSource:
    return FileSource(settings, _need_state(ctx), ctx.name, ctx.logger)
