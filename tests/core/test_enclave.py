"""The enclave process: what it refuses at boot, and what garbage on its socket does."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys

import grpc
import pytest
from nacl.signing import SigningKey

from swqos_core.enclave.client import open_connection, query_identity
from swqos_core.enclave.protocol import FrameType, decode_error, encode, read_frame
from swqos_core.identity import to_base58
from swqos_dev import devstack
from swqos_testing.payloads import valid_cv
from tests.core.conftest import TRADER_TOKEN, static_stack


async def raw_exchange(stack, data: bytes) -> bytes:
    """Send raw bytes on a fresh enclave connection; return what comes back before it closes."""
    reader, writer = await open_connection(f"unix://{stack.dev.socket}")
    writer.write(data)
    writer.write_eof()  # a truncated frame must end in EOF, not wait forever
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # another protocol entirely
        struct.pack(">I", 1_000_000) + b"x" * 64,  # frame over the cap
        struct.pack(">I", 3) + b"abc",  # shorter than a header
        struct.pack(">I", 200) + b"x" * 20,  # truncated, then EOF
        encode(FrameType(0x82), 1, 0, b"")[:4] + b"\x7e" + b"\x00" * 12,  # unknown frame type
        encode(FrameType.SIGNATURE, 1, 0, b"\x00" * 64),  # a response sent as a request
    ],
)
async def test_garbage_closes_that_connection_only(tmp_path, garbage):
    async with static_stack(tmp_path) as stack:
        before = await stack.signatures_made()
        assert await raw_exchange(stack, garbage) == b""  # closed without an answer
        assert stack.enclave_process.poll() is None  # the process is still up
        assert (await stack.sign(valid_cv(), token=TRADER_TOKEN)).code is grpc.StatusCode.OK
        assert await stack.signatures_made() == before + 1


async def test_enclave_refuses_non_cv_on_its_own_socket(stack):
    """Even a compromised host talking to the socket directly gets no signature of a non-CV."""
    before = await stack.signatures_made()
    reader, writer = await open_connection(f"unix://{stack.dev.socket}")
    try:
        for i, payload in enumerate([b"\x01" + bytes(129), valid_cv()[:-1], b""]):
            writer.write(encode(FrameType.SIGN, i, 0, payload))
            frame = await asyncio.wait_for(read_frame(reader, 65536), 5)
            assert frame.type is FrameType.ERROR and frame.request_id == i
            assert decode_error(frame.data)[1].startswith("not a CertificateVerify")
    finally:
        writer.close()
    assert await stack.signatures_made() == before


async def test_many_requests_share_one_connection(stack):
    reader, writer = await open_connection(f"unix://{stack.dev.socket}")
    try:
        for i in range(20):
            writer.write(encode(FrameType.SIGN, 1000 + i, i, valid_cv()))
        ids = set()
        for _ in range(20):
            frame = await asyncio.wait_for(read_frame(reader, 65536), 5)
            assert frame.type is FrameType.SIGNATURE and len(frame.data) == 64
            ids.add(frame.request_id)
        assert ids == set(range(1000, 1020))
    finally:
        writer.close()


def run_enclave(config_path, timeout=30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swqos_core.cli", "enclave", "--config", str(config_path)],
                          capture_output=True, text=True, timeout=timeout)


def test_key_file_readable_by_others_stops_the_enclave(tmp_path):
    dev = devstack.prepare(tmp_path / "dev")
    os.chmod(dev.identity, 0o644)
    result = run_enclave(dev.enclave_config)
    assert result.returncode != 0
    assert "permissions 0644 let others read it; run: chmod 600" in result.stderr
    assert not dev.socket.exists()


def test_key_not_matching_expected_public_key_stops_the_enclave(tmp_path):
    dev = devstack.prepare(tmp_path / "dev")
    other = to_base58(bytes(SigningKey.generate().verify_key))
    data = devstack.enclave_config(dev)
    data["enclave"]["expected_public_key"] = other
    devstack.write_toml(dev.enclave_config, data)
    result = run_enclave(dev.enclave_config)
    assert result.returncode != 0
    assert f"not the expected {other}: refusing to start" in result.stderr
    assert not dev.socket.exists()


def test_corrupt_key_file_stops_the_enclave(tmp_path):
    dev = devstack.prepare(tmp_path / "dev")
    values = json.loads(dev.identity.read_text())
    values[40] ^= 1  # public half no longer matches the private half
    dev.identity.write_text(json.dumps(values))
    result = run_enclave(dev.enclave_config)
    assert result.returncode != 0 and "does not match the private half" in result.stderr


async def test_a_fake_key_provider_is_selected_by_configuration(tmp_path):
    seed = bytes(range(32))
    public = bytes(SigningKey(seed).verify_key)
    enclave = {
        "swqos": {"plugins": ["payload_tls_cv", "testing"], "allow_test_plugins": True},
        "enclave": {"expected_public_key": to_base58(public)},
        "pipeline": {"key_provider": "fake"},
        "layers": {"key_provider": {"file": None, "fake": {"seed_hex": seed.hex(), "document_hex": "a0b1",
                                                             "measurement": "ab" * 48}}},
    }
    async with static_stack(tmp_path, enclave=enclave) as stack:
        identity = await query_identity(f"unix://{stack.dev.socket}")
        assert identity.public_key == public and identity.measurement == "ab" * 48
        result = await stack.identity(b"n", token=TRADER_TOKEN)
        assert result.response.public_key == public
        assert result.response.attestation_document == bytes.fromhex("a0b1")
        assert stack.state.enclave_identity.measurement == "ab" * 48


def test_the_fake_key_provider_needs_permission(tmp_path):
    dev = devstack.prepare(tmp_path / "dev")
    data = devstack.enclave_config(dev)
    data["swqos"]["plugins"].append("testing")
    data["pipeline"]["key_provider"] = "fake"
    data["layers"] = {"key_provider": {"fake": {"seed_hex": "00" * 32}}}
    devstack.write_toml(dev.enclave_config, data)
    result = run_enclave(dev.enclave_config)
    assert result.returncode != 0 and "allow_test_plugins = true" in result.stderr


def fake_key_enclave(**fake):
    seed = bytes(range(32))
    return {
        "swqos": {"plugins": ["payload_tls_cv", "testing"], "allow_test_plugins": True},
        "enclave": {"expected_public_key": to_base58(bytes(SigningKey(seed).verify_key)), "max_inflight": 1},
        "pipeline": {"key_provider": "fake"},
        "layers": {"key_provider": {"file": None, "fake": {"seed_hex": seed.hex(), **fake}}},
    }


async def test_enclave_busy_becomes_resource_exhausted(tmp_path):
    async with static_stack(tmp_path, enclave=fake_key_enclave(attest_delay_ms=300),
                            proxy={"proxy": {"deadline_ms": 2000}}) as stack:
        results = await asyncio.gather(*(stack.identity(b"n", token=TRADER_TOKEN) for _ in range(3)))
        codes = sorted(r.code.name for r in results)
        assert "OK" in codes and "RESOURCE_EXHAUSTED" in codes, codes
        busy = next(r for r in results if r.code is grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert busy.details == "enclave busy" and float(busy.trailing["retry-after"]) > 0


async def test_enclave_fault_becomes_unavailable_and_the_enclave_keeps_signing(tmp_path):
    async with static_stack(tmp_path, enclave=fake_key_enclave(attest_fails=True)) as stack:
        result = await stack.identity(b"n", token=TRADER_TOKEN)
        assert result.code is grpc.StatusCode.UNAVAILABLE
        assert result.details == "enclave could not complete the request"  # no NSM detail leaks out
        assert (await stack.sign(valid_cv(), token=TRADER_TOKEN)).code is grpc.StatusCode.OK
