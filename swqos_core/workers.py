"""``[proxy] workers = N``: N host-proxy processes on one port under one ``swqos serve`` supervisor.

Exclusivity. Every ``swqos serve --config`` takes an exclusive ``flock`` on a lock file named for
its listen port (:func:`lock_path`) before anything binds, so a second supervisor, or a plain
single-process ``swqos serve``, on the same port stops at once with one line naming the address.
Only a supervisor's workers set SO_REUSEPORT, and a worker proves it belongs to the lock holder:
it inherits the supervisor's locked descriptor, and locking that descriptor again succeeds only
on the holder's own open file description (any other open of the file would be refused while the
lock is held). Linux also refuses to mix SO_REUSEPORT and plain sockets on one address and shares
a SO_REUSEPORT port only between sockets of one user.

The supervisor imports no grpc. It starts each worker as ``swqos serve --config FILE`` with
``subprocess`` and no ``preexec_fn`` (grpc's fork handlers can abort a forked child); the worker
asks for ``PR_SET_PDEATHSIG`` (SIGKILL) itself (:func:`swqos_core.enclave.child.die_with_parent`)
and reports readiness on a pipe. Worker 0 starts first, the others once it serves. A worker that
exits is restarted after a backoff doubling from :data:`BACKOFF_FIRST_S` to :data:`BACKOFF_MAX_S`;
SIGTERM and SIGINT are forwarded to every worker and the supervisor exits once they have (SIGKILL
after :data:`STOP_GRACE_S`). A worker that fails before the first start completes (a config error,
an address in use) stops the start: exit 1.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swqos_core.enclave.child import die_with_parent
from swqos_core.errors import ConfigError
from swqos_core.net import parse_listen

log = logging.getLogger("swqos.workers")

#: ``INDEX:LOCK_FD:READY_FD``, set by the supervisor in each worker's environment.
WORKER_ENV = "SWQOS_PROXY_WORKER"
PARENT_ENV = "SWQOS_PROXY_SUPERVISOR_PID"
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
#: A worker that ran this long before exiting is restarted after the first backoff again.
STABLE_S = 30.0
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
POLL_S = 0.1


def lock_dir() -> Path:
    """``$XDG_RUNTIME_DIR/swqos``, else ``/run/swqos`` when writable (systemd ``RuntimeDirectory=swqos``),
    else ``$TMPDIR/swqos-UID``; it must belong to this user (or root) and not be world-writable."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        base = Path(runtime) / "swqos"
    elif os.access("/run/swqos", os.W_OK):
        base = Path("/run/swqos")
    else:
        base = Path(tempfile.gettempdir()) / f"swqos-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    st = base.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (os.getuid(), 0) or st.st_mode & 0o002:
        raise ConfigError(f"lock directory {base}: not a directory of this user, or world-writable")
    return base


def lock_path(listen: str) -> Path:
    """One lock per TCP port, whatever the host: SO_REUSEPORT sockets on 0.0.0.0 and 127.0.0.1 could
    otherwise share one port."""
    return lock_dir() / f"proxy-port-{parse_listen(listen, where='[proxy] listen').port}.lock"


@dataclass
class ListenLock:
    """The exclusive lock on a listen port, held by ``swqos serve`` (and its workers) while it runs."""

    listen: str
    path: Path
    fd: int

    @classmethod
    def acquire(cls, listen: str) -> ListenLock | None:
        """Take the lock or raise ConfigError naming the address; None for port 0 (nothing to share)."""
        if parse_listen(listen, where="[proxy] listen").port == 0:
            return None
        path = lock_path(listen)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(f"[proxy] listen: {listen} is already served by another swqos serve "
                              f"(pid {holder}, lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(listen, path, fd)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


@dataclass
class WorkerSlot:
    """This process is worker ``index`` of a supervisor."""

    index: int
    ready_fd: int

    def ready(self, port: int) -> None:
        """Tell the supervisor this worker serves (after ``start_proxy`` returned)."""
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, f"{self.index} {os.getpid()} {port}\n".encode())
            os.close(self.ready_fd)
        log.info("worker %d (pid %d) serving on port %d", self.index, os.getpid(), port)


def worker_slot(cfg: Any) -> WorkerSlot | None:
    """In a process a supervisor started: die with it, prove it holds the supervisor's lock, and
    leave ``first_worker_services`` to worker 0. None in any other process."""
    raw = os.environ.pop(WORKER_ENV, None)
    if raw is None:
        return None
    # SIGKILL, not SIGTERM: the supervisor's death was not graceful either, a worker holds no key,
    # and a worker must never outlive its supervisor's lock (nor can it miss SIGKILL).
    die_with_parent(PARENT_ENV, who="swqos serve worker", sig=signal.SIGKILL)
    listen = cfg.settings.listen
    try:
        index, lock_fd, ready_fd = (int(x) for x in raw.split(":"))
        held = os.path.samestat(os.fstat(lock_fd), lock_path(listen).stat())
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only the holder's own description may
        for fd in (lock_fd, ready_fd):
            os.set_inheritable(fd, False)
    except (ValueError, OSError):
        held = False
    if not held:
        raise ConfigError(f"{WORKER_ENV} is set, but this process does not hold the lock of {listen}: "
                          "workers are started by swqos serve itself")
    if index:
        keep = cfg.settings.first_worker_services
        cfg.pipeline.services = [s for s in cfg.pipeline.services if s not in keep]
    return WorkerSlot(index, ready_fd)


class _StartFailed(Exception):
    pass


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    ready_r: int = -1
    ready: bool = False
    started: float = 0.0
    crashes: int = 0  # in a row
    restart_at: float = 0.0


class Supervisor:
    """Runs ``[proxy] workers`` workers of one config until SIGTERM/SIGINT."""

    def __init__(self, cfg: Any, lock: ListenLock, cli_args: list[str]) -> None:
        self.cfg = cfg
        self.lock = lock
        self.argv = [sys.executable, "-m", "swqos_core.cli", *cli_args, "serve", "--config", str(cfg.path)]
        self.workers = [_Worker(i) for i in range(cfg.settings.workers)]
        self.stop_signal: int | None = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_signal = signum

    def spawn(self, w: _Worker) -> None:
        r, wfd = os.pipe()  # non-inheritable (PEP 446); pass_fds hands only these two to the child
        env = {**os.environ, WORKER_ENV: f"{w.index}:{self.lock.fd}:{wfd}", PARENT_ENV: str(os.getpid())}
        try:
            w.proc = subprocess.Popen(self.argv, env=env, pass_fds=(self.lock.fd, wfd))
        finally:
            os.close(wfd)
        os.set_blocking(r, False)
        w.ready_r, w.ready, w.started = r, False, time.monotonic()
        log.info("worker %d started (pid %d)", w.index, w.proc.pid)

    def _check(self, w: _Worker, now: float, starting: bool) -> None:
        if w.proc is None:
            if now >= w.restart_at:
                self.spawn(w)
            return
        if not w.ready:
            with contextlib.suppress(BlockingIOError):
                w.ready = bool(os.read(w.ready_r, 128))
        code = w.proc.poll()
        if code is None:
            return
        os.close(w.ready_r)
        log.warning("worker %d (pid %d) exited with code %s", w.index, w.proc.pid, code)
        w.proc = None
        if starting:
            raise _StartFailed(f"worker {w.index} exited before serving")
        if self.stop_signal is not None:  # stopping (systemd signals every process of the unit): no restart
            return
        w.crashes = 1 if now - w.started >= STABLE_S else w.crashes + 1
        delay = min(BACKOFF_FIRST_S * 2 ** (w.crashes - 1), BACKOFF_MAX_S)
        w.restart_at = now + delay
        log.warning("restarting worker %d in %.1f s", w.index, delay)

    def run(self) -> int:
        """0 when stopped by a signal, 1 when the first start failed."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        # Worker 0 first, the others once it serves: it creates shared files (the sqlite store) alone,
        # and a config error shows once, from one process.
        self.spawn(self.workers[0])
        for w in self.workers[1:]:
            w.restart_at = math.inf
        starting, deadline = True, time.monotonic() + START_TIMEOUT_S
        try:
            while self.stop_signal is None:
                now = time.monotonic()
                if starting and self.workers[0].ready:
                    for w in self.workers[1:]:
                        w.restart_at = min(w.restart_at, now)
                for w in self.workers:
                    self._check(w, now, starting)
                if starting and all(w.ready for w in self.workers):
                    starting = False
                    log.info("swqos serve: %d workers serving on %s (supervisor pid %d)", len(self.workers),
                             self.cfg.settings.listen, os.getpid())
                if starting and now > deadline:
                    raise _StartFailed(f"the workers did not all serve within {START_TIMEOUT_S:.0f} s")
                time.sleep(POLL_S)
        except _StartFailed as exc:
            log.error("swqos serve: %s; stopping", exc)
            self.stop(signal.SIGTERM)
            return 1
        self.stop(self.stop_signal)
        return 0

    def stop(self, signum: int) -> None:
        """Forward ``signum`` to every worker, wait for them, SIGKILL any left after the grace."""
        live = [w.proc for w in self.workers if w.proc is not None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in live:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop within %.0f s; killing it", proc.pid, STOP_GRACE_S)
                proc.kill()
                proc.wait()
        self.lock.release()


def supervise(cfg: Any, cli_args: list[str]) -> int:
    """``swqos serve`` with ``[proxy] workers`` > 1."""
    lock = ListenLock.acquire(cfg.settings.listen)
    if lock is None:  # config.parse already refuses this
        raise ConfigError("[proxy] workers > 1 needs a fixed port in [proxy] listen, not port 0")
    return Supervisor(cfg, lock, cli_args).run()
