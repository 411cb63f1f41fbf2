"""The README's first command and `swqos serve --dev`, as a user runs them."""

import signal
import subprocess
import sys
import time

import grpc
from nacl.signing import VerifyKey

from swqos_core.identity import from_base58
from swqos_proto import SIGN_METHOD, signer_pb2
from swqos_testing.payloads import valid_cv


def test_demo_signs_verifies_refuses_and_exits_zero():
    result = subprocess.run([sys.executable, "-m", "swqos_core.cli", "demo"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "signature verifies against" in result.stdout
    assert "was refused: INVALID_ARGUMENT" in result.stdout
    assert "demo complete" in result.stdout


def test_serve_dev_writes_its_files_and_serves_the_printed_token(tmp_path):
    dev_dir = tmp_path / "dev"
    proc = subprocess.Popen(
        [sys.executable, "-m", "swqos_core.cli", "serve", "--dev", "--dev-dir", str(dev_dir),
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        target = None
        deadline = time.monotonic() + 60
        while target is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "host-proxy" in line and "localhost:" in line:
                target = line.split()[1]
        assert target, "the dev stack did not print its address"
        for name in ("config.toml", "enclave.toml", "ca.pem", "identity.pub", "trader.jwt"):
            assert (dev_dir / name).is_file(), name
        assert (dev_dir / "identity.json").stat().st_mode & 0o777 == 0o600
        assert (dev_dir / "issuer.key").stat().st_mode & 0o777 == 0o600
        token = (dev_dir / "trader.jwt").read_text().strip()
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials((dev_dir / "ca.pem").read_bytes()))
        rpc = channel.unary_unary(SIGN_METHOD, request_serializer=signer_pb2.SignCertificateVerifyRequest.SerializeToString,
                                  response_deserializer=signer_pb2.SignCertificateVerifyResponse.FromString)
        payload = valid_cv(48)
        response = rpc(signer_pb2.SignCertificateVerifyRequest(payload=payload),
                       metadata=(("authorization", f"Bearer {token}"),), timeout=10)
        identity = from_base58((dev_dir / "identity.pub").read_text())
        VerifyKey(identity).verify(payload, response.signature)
        channel.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0
    assert not (dev_dir / "enclave.sock").exists() or _enclave_gone(dev_dir)


def _enclave_gone(dev_dir) -> bool:
    """After Ctrl-C the child enclave must be gone: nobody answers on its socket."""
    import socket

    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(str(dev_dir / "enclave.sock"))
    except OSError:
        return True
    finally:
        s.close()
    return False


def test_dev_stack_never_generates_the_identity_key_in_the_proxy_process(tmp_path, monkeypatch):
    from nacl import signing

    from swqos_core import devstack

    def forbidden(*args, **kwargs):
        raise AssertionError("identity key material created in the host-proxy process")

    monkeypatch.setattr(signing.SigningKey, "generate", forbidden)
    dev = devstack.prepare(tmp_path / "dev")
    assert len(from_base58(dev.identity_b58())) == 32
    assert dev.identity.stat().st_mode & 0o777 == 0o600
