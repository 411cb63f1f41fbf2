"""Revoke a trader, kill -9 the host-proxy, start it again: still revoked (a real `swqos serve`
process on the sqlite store; the revocation arrives through `swqos state import` into the file
the running proxy shares). Also: `swqos state show | export | import` and their refusals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from swqos_dev import devstack
from swqos_state.testing import free_port
from swqos_testing.configs import merge
from swqos_testing.payloads import valid_cv
from swqos_testing.processes import stop
from swqos_testing.stack import Stack

SWQOS = [sys.executable, "-m", "swqos_core.cli"]
CV = valid_cv()
#: A revoked trader's authentic token: PERMISSION_DENIED (auth_jwt) or UNAUTHENTICATED (older auth_jwt).
REVOKED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


class ProcessProxy(Stack):
    """The test's client side of a proxy that runs as its own process."""

    port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def write_config(tmp_path: Path) -> tuple[ProcessProxy, Path]:
    dev = devstack.prepare(tmp_path / "dev")
    port = free_port()
    data = devstack.proxy_config(dev, f"127.0.0.1:{port}", without=["ratelimit"])
    data["swqos"]["plugins"] = [*data["swqos"]["plugins"], "state"]
    data = merge(data, {"proxy": {"enclave_ping_interval": 0.2},
                        "pipeline": {"store": "sqlite"},
                        "layers": {"store": {"sqlite": {"path": "state/swqos.sqlite3", "sync_interval": 0.05}}}})
    devstack.write_toml(dev.config, data)
    devstack.write_toml(dev.enclave_config, devstack.enclave_config(dev))
    p = ProcessProxy(dev, dev.enclave_config)
    p.port = port
    return p, dev.config


def serve(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*SWQOS, "serve", "--config", str(cfg)], stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def signs(proxy: ProcessProxy, token: str) -> grpc.StatusCode:
    r = await proxy.sign(CV, token=token)
    return r.code


async def wait_signing(proxy: ProcessProxy, token: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"proxy exited: {log.read_text()[-3000:]}")
        if await signs(proxy, token) == grpc.StatusCode.OK:
            return
        await asyncio.sleep(0.05)
        if proxy._channel is not None:  # a fresh channel: the old one may be in backoff
            await proxy._channel.close()
            proxy._channel = None
    raise AssertionError(f"proxy did not sign within 15 s: {log.read_text()[-3000:]}")


def state_cli(cfg: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SWQOS, "state", "--config", str(cfg), *args], capture_output=True, text=True,
                          timeout=60, input=stdin)


def revocation_doc(sub: str) -> dict:
    return {"format": "swqos-state", "version": 1, "policy": [
        {"namespace": "auth_jwt.revoked", "key": f"sub:{sub}", "value": True, "actor": "token:ops (t9)"}]}


@pytest.mark.slow
async def test_a_revocation_survives_kill_9(tmp_path):
    proxy, cfg = write_config(tmp_path)
    log = tmp_path / "proxy.log"
    await proxy.start_enclave()
    proc = serve(cfg, log)
    try:
        victim, other = proxy.token("trader-victim"), proxy.token("trader-other")
        await wait_signing(proxy, victim, proc, log)

        doc = tmp_path / "revoke.json"
        doc.write_text(json.dumps(revocation_doc("trader-victim")))
        done = state_cli(cfg, "import", str(doc))
        assert done.returncode == 0, done.stderr
        for _ in range(100):  # the running proxy reads the shared file within its sync interval
            if await signs(proxy, victim) in REVOKED:
                break
            await asyncio.sleep(0.05)
        assert await signs(proxy, victim) in REVOKED

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        await proxy._channel.close()
        proxy._channel = None
        before = await proxy.signatures_made()

        proc = serve(cfg, log)
        await wait_signing(proxy, other, proc, log)
        r = await proxy.sign(CV, token=victim)
        assert r.code in REVOKED and "revoked" in r.details
        assert await proxy.signatures_made() == before + 1  # only the other trader's signature

        shown = state_cli(cfg, "show")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["policy_records"] == {"auth_jwt.revoked": 1}
        exported = state_cli(cfg, "export")
        assert exported.returncode == 0
        records = json.loads(exported.stdout)["policy"]
        assert [(r["key"], r["actor"]) for r in records] == [("sub:trader-victim", "token:ops (t9)")]
    finally:
        stop(proc)
        await proxy.close()


@pytest.mark.parametrize("doc, needle", [
    ({"format": "swqos-state", "version": 2, "policy": []}, "newer"),
    ({"format": "swqos-state", "version": 1, "policy": [], "comment": "x"}, "unknown fields"),
    ({"format": "swqos-state", "version": 1, "policy": [{"namespace": "a", "key": "b", "value": 1, "extra": 2}]},
     "policy[0]"),
    ({"format": "other", "version": 1}, "format"),
    ({"format": "swqos-state", "version": 1, "bans": [{"key": "k", "remaining_seconds": -1}]}, "bans[0]"),
])
def test_import_refuses_bad_documents_and_writes_nothing(tmp_path, doc, needle):
    _, cfg = write_config(tmp_path)
    good = revocation_doc("first")["policy"]
    bad = dict(doc)
    if "policy" in bad and not bad["policy"]:
        bad["policy"] = good  # a valid record riding along must not be written either
    path = tmp_path / "in.json"
    path.write_text(json.dumps(bad))
    r = state_cli(cfg, "import", str(path))
    assert r.returncode == 1 and needle in r.stderr and "nothing written" in r.stderr
    shown = state_cli(cfg, "show")
    assert shown.returncode == 0 and json.loads(shown.stdout)["policy_records"] == {}


def test_state_commands_refuse_the_memory_store(tmp_path):
    dev = devstack.prepare(tmp_path / "dev")
    data = devstack.proxy_config(dev, "127.0.0.1:0", without=["ratelimit"])
    data["swqos"]["plugins"] = [*data["swqos"]["plugins"], "state"]
    devstack.write_toml(dev.config, data)
    r = state_cli(dev.config, "show")
    assert r.returncode == 2 and "memory" in r.stderr
