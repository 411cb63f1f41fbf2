"""The ``https`` and ``file`` revocation sources: background pollers around a :class:`KillSwitch`.

``start()`` applies the persisted manifest *before* returning (so a restart while halted is
still halted before the first request is served), then polls in the background: once at once,
then every ``poll_interval`` seconds (sooner when a held lift's timelock ends first). ``close()``
stops polling; it never lifts a halt.

Trust is either one pinned key (``public_key`` + ``key_id``) or a trust root pinned by its hash
(``root`` + ``root_sha256``); with a root, each poll first looks for the next root versions
(``<N>.root.json`` and ``<N>.root.json.sig`` next to the manifest, or under ``root_url``/``root_dir``)
and only then for the manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urljoin

from swqos_core import fetch
from swqos_core.errors import ConfigError
from swqos_core.fetch import FetchError, check_url
from swqos_killswitch import HALT_SOURCE
from swqos_killswitch.engine import Candidate, KillSwitch
from swqos_killswitch.manifest import SCOPE_RE
from swqos_killswitch.root import RootError
from swqos_killswitch.signing import MAX_SIGNATURE_BYTES, PinnedKey, SignatureError
from swqos_killswitch.store import ManifestStore, RootChainStore
from swqos_killswitch.trust import RootTrust, SingleKeyTrust, Trust, verify_first_root

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


#: How many times close() cancels the poller (one second each) before it gives up and logs.
CLOSE_ATTEMPTS = 10
#: Most new roots taken in one poll; the rest follow on the next polls.
MAX_ROOTS_PER_POLL = 8
_HEX64 = re.compile(r"\A[0-9a-fA-F]{64}\Z")


@dataclass(kw_only=True)
class _Common:
    #: Single-key trust: PEM SubjectPublicKeyInfo of the ECDSA P-256 manifest key (cosign.pub).
    public_key: Path | None = None
    #: Hex SHA-256 of that key's DER SPKI (`swqos manifest keygen` prints it); must match.
    key_id: str | None = None
    #: Threshold trust: the trust root installed at setup (`swqos manifest root init`).
    root: Path | None = None
    #: Its signature bundle; default: root + ".sig".
    root_signature: Path | None = None
    #: Hex SHA-256 of the root file's exact bytes (`swqos manifest root show` prints it); must match.
    root_sha256: str | None = None
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
        single, rooted = (self.public_key, self.key_id), (self.root, self.root_sha256)
        if any(v is not None for v in single) and any(v is not None for v in rooted):
            problems.append("give either public_key + key_id (one key) or root + root_sha256 (a trust root), not both")
        elif any(v is not None for v in rooted):
            if self.root is None:
                problems.append("root_sha256 without root")
            if not _HEX64.match(self.root_sha256 or ""):
                problems.append("root_sha256 must be 64 hex digits (swqos manifest root show prints it)")
        else:
            if self.public_key is None:
                problems.append("public_key is required (or root + root_sha256 for a trust root)")
            if not _HEX64.match(self.key_id or ""):
                problems.append("key_id must be 64 hex digits (swqos manifest keygen prints it)")
        if self.root_signature is not None and self.root is None:
            problems.append("root_signature without root")
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
    #: Where new roots are published (`<root_url><N>.root.json`); default: next to the manifest.
    root_url: str | None = None
    #: PEM CA bundle to verify the servers; default: the system's roots.
    ca_bundle: Path | None = None
    connect_timeout: float = 5.0
    total_timeout: float = 15.0

    def __post_init__(self) -> None:
        problems = self._common_problems()
        if self.root_url is not None and self.root is None:
            problems.append("root_url without root")
        for u in (self.url, self.signature_url, self.mirror_url, self.mirror_signature_url, self.root_url):
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
    #: Directory of new roots (`<N>.root.json`); default: the manifest's directory.
    root_dir: Path | None = None

    def __post_init__(self) -> None:
        problems = self._common_problems()
        if self.root_dir is not None and self.root is None:
            problems.append("root_dir without root")
        if problems:
            raise ValueError("; ".join(problems))


class PollingSource:
    """Shared lifecycle of both sources. Subclasses implement ``fetch()``."""

    def __init__(self, settings: _Common, state: ServiceState, name: str, logger: logging.Logger) -> None:
        self.settings = settings
        self.log = logger
        trust = _load_trust(settings)
        self.engine = KillSwitch(
            state=state,
            trust=trust,
            scope=settings.scope,
            store=ManifestStore(settings.state_dir, name),
            root_store=RootChainStore(settings.state_dir, name) if isinstance(trust, RootTrust) else None,
            on_stale=settings.on_stale,
            halt_source=_halt_source_for(state, name),
            logger=logger,
            alert_after_failures=settings.alert_after_failures,
        )
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    async def fetch(self) -> tuple[list[Candidate], list[tuple[str, str, str]]]:
        raise NotImplementedError

    async def fetch_root(self, version: int) -> Candidate | None:
        """Root ``version`` and its signature, or None when it is not published (yet)."""
        raise NotImplementedError

    async def _update_roots(self, started: datetime) -> None:
        for _ in range(MAX_ROOTS_PER_POLL):
            trust = self.engine.trust
            if not isinstance(trust, RootTrust):
                return
            try:
                got = await self.fetch_root(trust.version + 1)
            except FetchError as exc:
                self.engine.fetch_failures_total[f"root_{exc.label}"] += 1
                self.log.warning("trust root fetch failed: %s", exc.message)
                return
            if got is None or not self.engine.offer_root(got.origin, got.manifest_bytes, got.signature, started=started):
                return

    async def poll_once(self) -> str:
        """One poll, now. Never raises: any unexpected error counts as a failed poll."""
        started = datetime.now(UTC)
        try:
            await self._update_roots(started)
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
        while not self._stopping:
            try:
                await self.poll_once()
            except Exception:  # never let the poller die silently: log and keep polling
                self.log.exception("revocation poller error")
            wait = self.settings.poll_interval
            remaining = self.engine.lift_timelock_remaining()
            if remaining is not None:  # a held lift is due before the next regular poll: look again then
                wait = max(0.05, min(wait, remaining + 0.05))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    def snapshot(self) -> dict[str, object]:
        """Counters and manifest version/age for the metrics exporter (see KillSwitch.snapshot)."""
        return self.engine.snapshot()

    def poll_now(self) -> None:
        """Ask the background poller to poll at once (admin API, SIGHUP)."""
        self._wake.set()

    async def close(self) -> None:
        self.engine.close()
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        # A cancellation that lands while a fetch's own timeout fires can be swallowed inside the
        # HTTP stack; cancel again until the task is done (bounded), never wait on it unbounded.
        for _ in range(CLOSE_ATTEMPTS):
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if done:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    task.result()
                return
        self.log.error("revocation poller did not stop after %d cancellations", CLOSE_ATTEMPTS)


class HttpsSource(PollingSource):
    """Polls the manifest (and its signature) over HTTPS from one or two mirrors."""

    def __init__(self, settings: HttpsSourceSettings, state: ServiceState, name: str = "https",
                 logger: logging.Logger | None = None) -> None:
        super().__init__(settings, state, name, logger or logging.getLogger("swqos.revocation.https"))
        self.https = settings
        try:
            fetch.ssl_context(settings.ca_bundle)  # a bad bundle is a startup error, not a failed poll
        except (OSError, ValueError) as exc:
            raise ConfigError(f"ca_bundle: {exc}") from None
        self.root_base = settings.root_url or urljoin(settings.url, "./")
        self.locations = [(settings.url, settings.signature_url or settings.url + ".sig")]
        if settings.mirror_url:
            self.locations.append((settings.mirror_url, settings.mirror_signature_url or settings.mirror_url + ".sig"))

    async def _get(self, url: str, cap: int) -> bytes:
        return await fetch.get(url, max_bytes=cap, connect_timeout=self.https.connect_timeout,
                               total_timeout=self.https.total_timeout, ca_bundle=self.https.ca_bundle)

    async def _fetch_pair(self, url: str, sig_url: str) -> Candidate:
        body, sig = await asyncio.gather(self._get(url, self.https.max_bytes), self._get(sig_url, MAX_SIGNATURE_BYTES))
        return Candidate(url, body, sig)

    async def fetch_root(self, version: int) -> Candidate | None:
        url = urljoin(self.root_base, f"{version}.root.json")
        try:
            data, sig = await asyncio.gather(self._get(url, self.https.max_bytes),
                                             self._get(url + ".sig", MAX_SIGNATURE_BYTES))
        except FetchError as exc:
            if exc.status == 404:
                return None  # not published: no rotation
            raise
        return Candidate(url, data, sig)

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


class FileSource(PollingSource):
    """Reads the manifest and its signature from local files (tests, air-gapped hosts)."""

    def __init__(self, settings: FileSourceSettings, state: ServiceState, name: str = "file",
                 logger: logging.Logger | None = None) -> None:
        super().__init__(settings, state, name, logger or logging.getLogger("swqos.revocation.file"))
        self.path = Path(settings.path)
        self.signature_path = Path(settings.signature_path or f"{settings.path}.sig")
        self.root_dir = Path(settings.root_dir) if settings.root_dir else self.path.parent

    @staticmethod
    def _read(path: Path, cap: int) -> bytes:
        with path.open("rb") as fh:
            data = fh.read(cap + 1)
        if len(data) > cap:
            raise FetchError("oversize", f"{path}: more than the {cap}-byte cap")
        return data

    async def fetch_root(self, version: int) -> Candidate | None:
        path = self.root_dir / f"{version}.root.json"
        try:
            data = self._read(path, self.settings.max_bytes)
            sig = self._read(Path(f"{path}.sig"), MAX_SIGNATURE_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FetchError("read", f"{exc.filename}: {exc.strerror}") from None
        return Candidate(str(path), data, sig)

    async def fetch(self) -> tuple[list[Candidate], list[tuple[str, str, str]]]:
        try:
            body = self._read(self.path, self.settings.max_bytes)
            sig = self._read(self.signature_path, MAX_SIGNATURE_BYTES)
        except FetchError as exc:
            return [], [(str(self.path), exc.label, exc.message)]
        except OSError as exc:
            return [], [(str(self.path), "read", f"{exc.filename}: {exc.strerror}")]
        return [Candidate(str(self.path), body, sig)], []


def _load_trust(settings: _Common) -> Trust:
    """The pinned key, or the installed root checked against its pinned hash (startup errors)."""
    if settings.root is None:
        try:
            return SingleKeyTrust(PinnedKey.from_file(settings.public_key, settings.key_id))  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise ConfigError(f"public_key: {exc}") from None
    sig_path = Path(settings.root_signature or f"{settings.root}.sig")
    try:
        data = Path(settings.root).read_bytes()
        sig = sig_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"root: cannot read {exc.filename}: {exc.strerror}") from None
    try:
        link = verify_first_root(data, sig, settings.root_sha256 or "")
    except (RootError, SignatureError) as exc:
        raise ConfigError(f"root: refused ({exc.label}): {exc}") from None
    if link.root.scope != settings.scope:
        raise ConfigError(f"root: the trust root is for scope {link.root.scope!r}, not {settings.scope!r}")
    return RootTrust([link])


def _need_state(ctx: BuildContext) -> ServiceState:
    if ctx.state is None:
        raise ConfigError("a revocation source runs only in the host-proxy (no service state here)")
    return ctx.state


def build_https_source(settings: HttpsSourceSettings, ctx: BuildContext) -> HttpsSource:
    return HttpsSource(settings, _need_state(ctx), ctx.name, ctx.logger)


def build_file_source(settings: FileSourceSettings, ctx: BuildContext) -> FileSource:
    return FileSource(settings, _need_state(ctx), ctx.name, ctx.logger)
