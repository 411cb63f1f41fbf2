"""The README's first command, `swqos serve --dev` and `swqos dev`, as a user runs them: real
processes, real signals, real gRPC over TLS 1.3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from nacl.signing import VerifyKey

from swqos_core.identity import from_base58
from swqos_proto import SIGN_METHOD, signer_pb2
from swqos_testing.payloads import valid_cv

SWQOS = [sys.executable, "-m", "swqos_core.cli"]
pytestmark = pytest.mark.slow  # real processes: each starts an enclave and a proxy


def test_demo_signs_verifies_refuses_and_exits_zero():
    result = subprocess.run([*SWQOS, "demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "signature verifies against" in result.stdout
    assert "was refused: INVALID_ARGUMENT" in result.stdout
    assert "demo complete" in result.stdout


class DevProcess:
    """``swqos serve --dev`` as a child; reads its banner for the address and the enclave's pid."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*SWQOS, "serve", "--dev", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.target = ""
        self.enclave_pid = 0
        deadline = time.monotonic() + 60
        while not (self.target and self.enclave_pid) and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            self.lines.append(line)
            words = line.split()
            if words[:1] == ["enclave"] and words[1] == "pid":
                self.enclave_pid = int(words[2].rstrip(","))
            if words[:1] == ["host-proxy"]:
                self.target = words[1]
        assert self.target and self.enclave_pid, "the dev stack did not print its banner:\n" + "".join(self.lines)

    def stop(self, sig: int = signal.SIGINT) -> str:
        self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


def sign(target: str, dev_dir: Path, token: str) -> bytes:
    payload = valid_cv(48)
    with grpc.secure_channel(target, grpc.ssl_channel_credentials((dev_dir / "ca.pem").read_bytes())) as channel:
        rpc = channel.unary_unary(SIGN_METHOD, request_serializer=signer_pb2.SignCertificateVerifyRequest.SerializeToString,
                                  response_deserializer=signer_pb2.SignCertificateVerifyResponse.FromString)
        response = rpc(signer_pb2.SignCertificateVerifyRequest(payload=payload),
                       metadata=(("authorization", f"Bearer {token}"),), timeout=10)
    VerifyKey(from_base58((dev_dir / "identity.pub").read_text())).verify(payload, response.signature)
    return response.signature


def process_gone(pid: int) -> bool:
    """No such process, or a zombie nobody has reaped yet (it holds no memory, no key, no socket)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_serve_dev_writes_its_files_serves_the_printed_token_and_stops_cleanly(tmp_path):
    dev_dir = tmp_path / "dev"
    dev = DevProcess("--dev-dir", str(dev_dir), "--listen", "127.0.0.1:0")
    try:
        for name in ("config.toml", "enclave.toml", "ca.pem", "identity.pub", "trader.jwt", ".swqos-dev"):
            assert (dev_dir / name).is_file(), name
        for name in ("identity.json", "issuer.key", "tls.key"):
            assert (dev_dir / name).stat().st_mode & 0o777 == 0o600, name
        assert (dev_dir / "enclave.sock").exists()
        sign(dev.target, dev_dir, (dev_dir / "trader.jwt").read_text().strip())
    finally:
        out = dev.stop(signal.SIGINT)
    assert dev.proc.returncode == 0, out
    assert "swqos dev: stopped" in out
    assert not (dev_dir / "enclave.sock").exists()
    assert process_gone(dev.enclave_pid)


def test_sigterm_stops_it_too_and_a_restart_reuses_the_keys(tmp_path):
    dev_dir = tmp_path / "dev"
    first = DevProcess("--dev-dir", str(dev_dir), "--listen", "127.0.0.1:0")
    old_token = (dev_dir / "trader.jwt").read_text().strip()
    identity, issuer_key, ca = ((dev_dir / n).read_bytes() for n in ("identity.pub", "issuer.key", "ca.pem"))
    out = first.stop(signal.SIGTERM)
    assert first.proc.returncode == 0, out
    assert "swqos dev: stopped" in out and not (dev_dir / "enclave.sock").exists()
    assert process_gone(first.enclave_pid)

    second = DevProcess("--dev-dir", str(dev_dir), "--listen", "127.0.0.1:0")
    try:
        assert [(dev_dir / n).read_bytes() for n in ("identity.pub", "issuer.key", "ca.pem")] == [identity, issuer_key, ca]
        sign(second.target, dev_dir, old_token)  # minted by the first run: still valid
    finally:
        out = second.stop(signal.SIGTERM)
    assert second.proc.returncode == 0, out


def test_sigkill_of_the_parent_takes_the_enclave_child_with_it(tmp_path):
    dev = DevProcess("--dev-dir", str(tmp_path / "dev"), "--listen", "127.0.0.1:0")
    assert not process_gone(dev.enclave_pid)
    dev.proc.kill()
    dev.proc.wait(10)
    deadline = time.monotonic() + 5
    while not process_gone(dev.enclave_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    gone = process_gone(dev.enclave_pid)
    if not gone:
        os.kill(dev.enclave_pid, signal.SIGKILL)
    assert gone, "the enclave child (holding the identity key) outlived its SIGKILLed parent"


def test_a_directory_that_is_not_a_dev_stack_is_refused_in_one_line(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine\n")
    result = subprocess.run([*SWQOS, "serve", "--dev", "--dev-dir", str(project), "--listen", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "is not a dev stack directory" in result.stderr and str(project) in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt"]  # nothing written


def test_a_non_loopback_listen_is_refused_without_dev_public(tmp_path):
    dev_dir = tmp_path / "dev"
    result = subprocess.run([*SWQOS, "serve", "--dev", "--dev-dir", str(dev_dir), "--listen", "0.0.0.0:0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr and "--dev-public" in result.stderr
    assert not dev_dir.exists()


def test_swqos_dev_is_the_same_command(tmp_path):
    result = subprocess.run([*SWQOS, "dev", "--dev-dir", str(tmp_path / "d"), "--listen", "192.0.2.1:0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "not a loopback address" in result.stderr
    help_text = subprocess.run([*SWQOS, "dev", "--help"], capture_output=True, text=True, timeout=60).stdout
    for flag in ("--dev-dir", "--listen", "--dev-public"):
        assert flag in help_text
