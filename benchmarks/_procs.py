"""Processes of a benchmark run: spawn, wait for the port, stop, read CPU and RSS from /proc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from swqos_testing.processes import stop  # noqa: F401 (the harness stops its processes through _procs)

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")])
    e.setdefault("GRPC_VERBOSITY", "ERROR")
    return e


def spawn(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env(),
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def wait_port(portfile: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if portfile.exists() and portfile.read_text().strip():
            return int(portfile.read_text())
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}; see its log")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args} did not start")


def loop_tid(portfile: Path, pid: int) -> int:
    """The event-loop thread of a server that wrote ``<portfile>.tid`` (else the main thread)."""
    side = Path(f"{portfile}.tid")
    return int(side.read_text()) if side.exists() else pid




def stats(proc: subprocess.Popen[bytes], statsfile: Path) -> dict[str, Any]:
    """Ask a ``benchmarks._proxy`` for its observer's statistics (SIGUSR1), and reset them."""
    statsfile.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR1)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if statsfile.exists():
            try:
                return json.loads(statsfile.read_text())
            except json.JSONDecodeError:
                pass
        time.sleep(0.05)
    return {}


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """CPU time of one thread, or of a process (the sum over its threads), in seconds.

    Read from ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds on the CPU, as the scheduler
    counts it) rather than ``stat``'s utime + stime, whose 10 ms ticks are too coarse for a few
    microseconds per request. A thread that exits inside the window takes its share with it
    (grpc's and asyncio's threads live as long as the server). Falls back to ``stat`` where the
    kernel has no schedstat.
    """
    tids = [tid] if tid is not None else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    total = 0.0
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0]) / 1e9
        except FileNotFoundError:
            if t == tid:
                raise
        except (OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class CpuMeter:
    """CPU of named (pid, tid) pairs between :meth:`start` and :meth:`stop`."""

    def __init__(self, **targets: tuple[int, int | None]) -> None:
        self.targets = targets
        self._t0: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = {k: cpu_seconds(pid, tid) for k, (pid, tid) in self.targets.items()}

    def stop(self) -> dict[str, float]:
        return {k: cpu_seconds(pid, tid) - self._t0[k] for k, (pid, tid) in self.targets.items()}


class Target:
    """One server process under test (its port file written once it serves), with the (pid, tid)
    pairs whose CPU is measured: its event-loop thread, the whole process, and the enclave's."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], portfile: Path, enclave_pid: int | None) -> None:
        self.name, self.proc = name, proc
        self.addr = f"127.0.0.1:{wait_port(portfile, proc)}"
        tid = loop_tid(portfile, proc.pid)
        meters: dict[str, tuple[int, int | None]] = {"loop": (proc.pid, tid), "process": (proc.pid, None)}
        if enclave_pid is not None:
            meters["enclave"] = (enclave_pid, None)
        self.meter = CpuMeter(**meters)
