"""``[proxy] workers = N``: real ``swqos serve`` supervisors as processes, a real enclave child, real
gRPC over TLS 1.3 through the shared port (swqos_core/workers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from swqos_auth_jwt.api_tokens import create_token
from swqos_core import config
from swqos_core.enclave.child import start_enclave_process
from swqos_core.enclave.client import EnclaveClient
from swqos_core.errors import ConfigError
from swqos_core.state import ServiceState
from swqos_core.workers import WORKER_ENV
from swqos_dev import devstack
from swqos_proto import SIGN_METHOD, signer_pb2
from swqos_testing.configs import merge
from swqos_testing.payloads import valid_cv
from swqos_testing.processes import children, stop

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT and /proc are Linux's")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def established_on(pid: int, port: int) -> int:
    """Established TCP connections on local ``port`` whose socket this process holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):  # grpc listens on a dual-stack socket: IPv4 peers are in tcp6
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = row.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01" and cols[9] in inodes:
                count += 1
    return count


@dataclass
class Proxy:
    dev: devstack.DevDir
    config: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> set[int]:
        return children(self.proc.pid)

    def sign_on_new_connections(self, n: int) -> list[tuple[grpc.Channel, grpc.StatusCode]]:
        """One signature on each of ``n`` new TCP connections; the channels are left open."""
        creds = grpc.ssl_channel_credentials(root_certificates=self.dev.ca.read_bytes())
        token = devstack.mint_dev_token(self.dev, "trader-1")
        out = []
        for i in range(n):
            channel = grpc.secure_channel(f"127.0.0.1:{self.port}", creds, options=[
                ("grpc.ssl_target_name_override", "localhost"), ("grpc.channel_id", f"{time.monotonic()}-{i}")])
            stub = channel.unary_unary(SIGN_METHOD, request_serializer=None,
                                       response_deserializer=signer_pb2.SignCertificateVerifyResponse.FromString)
            request = signer_pb2.SignCertificateVerifyRequest(payload=valid_cv()).SerializeToString()
            try:
                response = stub(request, metadata=[("authorization", f"Bearer {token}")], timeout=5)
                code = grpc.StatusCode.OK if len(response.signature) == 64 else grpc.StatusCode.UNKNOWN
            except grpc.RpcError as exc:
                code = exc.code()
            out.append((channel, code))
        return out


def run_serve(config_path: Path, env: dict[str, str], timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swqos_core.cli", "serve", "--config", str(config_path)],
                          env=env, capture_output=True, text=True, timeout=timeout)


def write_config(dev: devstack.DevDir, name: str, port: int, overrides: dict | None = None, **proxy: object) -> Path:
    data = devstack.proxy_config(dev, f"127.0.0.1:{port}", without=["ratelimit"])
    data = merge(data, overrides or {})
    data = merge(data, {
        "swqos": {"plugins": [*dict.fromkeys([*data["swqos"]["plugins"], "state"])]},
        "proxy": {"enclave_ping_interval": 0.2, **proxy},
        "pipeline": {"store": "sqlite"},
        "layers": {"store": {"sqlite": {"path": str(dev.root / f"{name}.sqlite3"), "sync_interval": 0.2}}},
    })
    path = dev.root / name
    devstack.write_toml(path, data)
    return path


@pytest.fixture(scope="module")
def enclave(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.DevDir]:
    """One dev directory and enclave child for the module (each supervisor connects to it)."""
    root = tmp_path_factory.mktemp("workers")
    dev = devstack.prepare(root / "dev")
    devstack.write_toml(dev.enclave_config, devstack.enclave_config(dev))
    proc = start_enclave_process(dev.enclave_config, root / "enclave.log")
    try:
        wait_for(dev.socket.exists, "the enclave socket")
        yield dev
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def supervisor(dev: devstack.DevDir, name: str, overrides: dict | None = None) -> Iterator[Proxy]:
    """``swqos serve`` with two workers on a fixed port, its own lock directory and state file."""
    port = free_port()
    cfg = write_config(dev, f"{name}.toml", port, overrides, workers=2)
    run_dir = dev.root.parent / f"run-{name}"
    run_dir.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run_dir)}
    log = dev.root.parent / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "swqos_core.cli", "serve", "--config", str(cfg)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    p = Proxy(dev, cfg, port, env, proc, log)
    try:
        wait_for(lambda: "2 workers serving on" in p.log_text() or proc.poll() is not None, "the workers", 40)
        assert proc.poll() is None, p.log_text()
        yield p
    finally:
        stop(proc, 20)


@pytest.fixture(scope="module")
def shared(enclave: devstack.DevDir) -> Iterator[Proxy]:
    """One supervisor for the tests that leave it serving (a restarted worker included)."""
    with supervisor(enclave, "shared") as p:
        yield p


@pytest.fixture
def proxy(enclave: devstack.DevDir, request: pytest.FixtureRequest) -> Iterator[Proxy]:
    """A supervisor of this test's own, for tests that stop it."""
    with supervisor(enclave, request.node.name[5:25]) as p:
        yield p


def test_two_workers_sign_through_one_port_and_both_answer(shared: Proxy):
    proxy = shared
    workers = proxy.workers()
    assert len(workers) == 2
    calls = proxy.sign_on_new_connections(24)
    try:
        assert [code for _, code in calls] == [grpc.StatusCode.OK] * 24
        # The kernel spreads connections over the SO_REUSEPORT group by a hash of the 4-tuple: with 24
        # connections, all on one worker would happen about once in 8 million runs.
        per_worker = {pid: established_on(pid, proxy.port) for pid in workers}
        assert sum(per_worker.values()) == 24 and all(per_worker.values()), per_worker
    finally:
        for channel, _ in calls:
            channel.close()
    assert "worker 0 (pid" in proxy.log_text() and "worker 1 (pid" in proxy.log_text()


def test_a_killed_worker_is_restarted_and_the_port_keeps_serving(shared: Proxy):
    proxy = shared
    before = proxy.workers()
    victim = max(before)
    os.kill(victim, signal.SIGKILL)
    def replaced() -> set[int] | None:
        now = proxy.workers()
        return now if len(now) == 2 and victim not in now else None

    after = wait_for(replaced, "a replacement worker")
    (fresh,) = after - before
    wait_for(lambda: f"(pid {fresh}) serving" in proxy.log_text(), "the replacement to serve")
    assert f"(pid {victim}) exited with code -9" in proxy.log_text()
    assert "restarting worker" in proxy.log_text()
    calls = proxy.sign_on_new_connections(8)
    for channel, _ in calls:
        channel.close()
    assert [code for _, code in calls] == [grpc.StatusCode.OK] * 8


def unix_listener_owners(path: Path, pids: set[int]) -> set[int]:
    inodes = {row.split()[6] for row in Path("/proc/net/unix").read_text().splitlines()[1:]
              if row.endswith(" " + str(path))}
    return {pid for pid in pids if any(os.readlink(fd)[8:-1] in inodes
                                       for fd in Path(f"/proc/{pid}/fd").iterdir() if fd.is_symlink())}


def test_first_worker_services_run_in_worker_0_and_every_worker_audits(enclave: devstack.DevDir):
    root = enclave.root.parent
    admin_tokens = root / "admin-tokens.json"
    create_token(admin_tokens, "ops-admin", "admin")
    audit = root / "audit-services.jsonl"
    services = {
        "swqos": {"plugins": [*devstack.proxy_config(enclave, "127.0.0.1:1", without=["ratelimit"])["swqos"]["plugins"],
                              "ops"]},
        "pipeline": {"services": ["audit", "admin"]},
        "proxy": {"first_worker_services": ["admin"]},
        "layers": {"service": {"audit": {"path": str(audit)},
                               "admin": {"listen": f"unix://{root / 'admin.sock'}", "token_authenticator": "api_token",
                                         "token_auth": {"store": str(admin_tokens), "accept_roles": ["admin"]}}}},
    }
    with supervisor(enclave, "services", services) as proxy:
        first = int(proxy.log_text().split("worker 0 started (pid ", 1)[1].split(")", 1)[0])
        assert unix_listener_owners(root / "admin.sock", proxy.workers()) == {first}
        calls = proxy.sign_on_new_connections(16)
        try:
            assert [code for _, code in calls] == [grpc.StatusCode.OK] * 16
            assert all(established_on(pid, proxy.port) for pid in proxy.workers())
        finally:
            for channel, _ in calls:
                channel.close()

        def decisions() -> list[dict]:
            lines = [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
            return [d for d in lines if d.get("rpc") == "SignCertificateVerify"]

        wait_for(lambda: len(decisions()) >= 16, "16 audit lines")
        assert len(decisions()) == 16 and {d.get("outcome") for d in decisions()} == {"OK"}


def test_sigterm_stops_the_supervisor_and_every_worker(proxy: Proxy):
    workers = proxy.workers()
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(20) == 0
    assert not any(alive(pid) for pid in workers)
    with socket.socket() as s:  # the port is free again: nothing of ours still listens
        assert s.connect_ex(("127.0.0.1", proxy.port)) != 0


def test_workers_die_with_a_killed_supervisor(proxy: Proxy):
    workers = proxy.workers()
    proxy.proc.kill()
    proxy.proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), "the workers to exit (PR_SET_PDEATHSIG)")


def test_a_second_supervisor_or_a_plain_serve_on_the_address_fails_naming_it(shared: Proxy):
    proxy = shared
    address = f"127.0.0.1:{proxy.port}"
    second = run_serve(proxy.config, proxy.env)
    plain = run_serve(write_config(proxy.dev, "plain.toml", proxy.port), proxy.env)
    for result in (second, plain):
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{address} is already served by another swqos serve" in lines[0], lines
    # A plain serve that does not see the lock (another lock directory) still cannot bind beside the
    # workers: they alone set SO_REUSEPORT, and Linux refuses to mix it with a plain socket.
    other_dir = proxy.dev.root.parent / "run-other"
    other_dir.mkdir(mode=0o700)
    unlocked = run_serve(proxy.config.with_name("plain.toml"), {**proxy.env, "XDG_RUNTIME_DIR": str(other_dir)})
    assert unlocked.returncode == 1
    assert f"cannot bind {address}: the address is in use" in unlocked.stderr
    calls = proxy.sign_on_new_connections(4)  # the supervisor's workers still serve, alone
    for channel, _ in calls:
        channel.close()
    assert [code for _, code in calls] == [grpc.StatusCode.OK] * 4


def test_a_process_claiming_to_be_a_worker_without_the_lock_is_refused(shared: Proxy):
    proxy = shared
    with open(os.devnull) as fake:  # a descriptor that is not the supervisor's lock
        result = subprocess.run(
            [sys.executable, "-m", "swqos_core.cli", "serve", "--config", str(proxy.config)],
            env={**proxy.env, WORKER_ENV: f"1:{fake.fileno()}:{fake.fileno()}"}, pass_fds=(fake.fileno(),),
            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert f"does not hold the lock of 127.0.0.1:{proxy.port}" in result.stderr


async def test_enclave_client_close_returns_when_a_cancel_is_swallowed():
    """A worker that ignored SIGTERM for good: the enclave connection task lost close()'s cancel
    (3.11's wait_for, or the reader clean-up's suppress), and close() awaited it forever."""
    swallowed = []

    async def connection() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)  # as contextlib.suppress(asyncio.CancelledError) around a clean-up does

    client = EnclaveClient("unix:///nonexistent/enclave.sock", ServiceState("test"))
    client._task = asyncio.create_task(connection())
    await asyncio.sleep(0)
    closing = asyncio.create_task(client.close())
    await asyncio.wait({closing}, timeout=10)  # not wait_for: its own cancel would unstick close()
    try:
        assert closing.done() and swallowed == [True] and client._task.cancelled()
    finally:
        closing.cancel()
        client._task.cancel()


# --- configuration -------------------------------------------------------------------------
BASE = {"proxy": {"tls_cert": "c.pem", "tls_key": "k.pem", "enclave": "unix:///run/e.sock",
                  "listen": "127.0.0.1:8443"}, "pipeline": {"auth": ["jwt"]}}


def parse(**tables: dict) -> config.AppConfig:
    return config.parse(merge(BASE, tables), process="proxy", path=Path("/etc/swqos/proxy.toml"))


def test_workers_with_the_per_process_memory_store_are_refused():
    with pytest.raises(ConfigError, match=r"workers = 2 needs a shared state store.*memory store is per process"):
        parse(proxy={"workers": 2})
    assert parse(proxy={"workers": 2}, pipeline={"store": "sqlite"}).settings.workers == 2
    assert parse().settings.workers == 1


@pytest.mark.parametrize("proxy, message", [
    ({"workers": 0}, "workers must be between 1 and 256"),
    ({"workers": 257}, "workers must be between 1 and 256"),
    ({"workers": 2, "listen": "127.0.0.1:0"}, "needs a fixed port"),
    ({"first_worker_services": ["admin"]}, "'admin' is not in \\[pipeline\\] services"),
])
def test_bad_worker_settings_are_refused(proxy, message):
    with pytest.raises(ConfigError, match=message):
        parse(proxy=proxy, pipeline={"store": "sqlite"})
