"""Running the enclave signer as a child process (the dev stack, the test kit, the benchmark).

In production the enclave is a Nitro Enclave started by ``nitro-cli``; on a developer's machine
it is a plain child process on a Unix socket. The child is asked to die with its parent
(``PR_SET_PDEATHSIG``), so a SIGKILLed parent never leaves a key-holding process behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

from swqos_core.errors import ConfigError

_PR_SET_PDEATHSIG = 1
#: Set by :func:`start_enclave_process` to the parent's pid; the child then asks to die with it.
PARENT_ENV = "SWQOS_ENCLAVE_PARENT_PID"


def die_with_parent(env: str = PARENT_ENV, who: str = "swqos enclave", sig: int = signal.SIGTERM) -> None:
    """In the enclave child (or a host-proxy worker, ``env`` naming its variable): get ``sig``
    when the parent whose pid ``env`` holds dies, and exit now if it already has.

    Done by the child itself at startup rather than in a ``preexec_fn``: that would make
    subprocess fork (instead of spawn) a parent that runs grpc threads, and grpc's fork handlers
    can abort the child before it execs.
    """
    parent = os.environ.pop(env, None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # the parent's normal shutdown still stops it
        return
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        raise SystemExit(f"{who}: the parent process is gone; not starting")


def start_enclave_process(config_path: Path, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``swqos enclave --config CONFIG`` as a child that dies with this process."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "swqos_core.cli", "enclave", "--config", str(config_path)],
        stdout=out, stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL,
        env={**os.environ, PARENT_ENV: str(os.getpid())},
    )


async def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Wait until the child listens on ``path``; raise ConfigError if it exits or takes too long."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise ConfigError(f"the enclave exited with code {proc.returncode} before listening")
        if loop.time() > deadline:
            raise ConfigError(f"the enclave did not listen on {path} within {timeout:.0f}s")
        await asyncio.sleep(0.05)
