"""``swqos demo``: start the dev stack, sign a real CertificateVerify through the public API,
verify it, show a refusal, print the latency, exit 0 (or non-zero if any step fails)."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
from nacl.signing import VerifyKey

from swqos_core import config
from swqos_core.enclave.child import start_enclave_process, wait_for_socket
from swqos_core.errors import ConfigError
from swqos_core.identity import to_base58
from swqos_dev import devstack
from swqos_proto import SIGN_METHOD, signer_pb2

CV_PREFIX = b"\x20" * 64 + b"TLS 1.3, client CertificateVerify\x00"


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


async def demo(root: Path) -> int:
    from swqos_core.server import start_proxy

    dev = devstack.prepare(root, listen="127.0.0.1:0")
    step(f"dev stack in {dev.root}: identity {dev.identity_b58()}")
    enclave = start_enclave_process(dev.enclave_config, dev.root / "enclave.log")
    proxy = None
    try:
        await wait_for_socket(dev.socket, enclave)
        step(f"enclave signer running (pid {enclave.pid}) on {dev.socket}")
        proxy = await start_proxy(config.load(dev.config, process="proxy"))
        while not proxy.state.serving:
            await asyncio.sleep(0.02)
        target = f"localhost:{proxy.port}"
        step(f"host-proxy on {target}: gRPC over TLS 1.3 only, enclave connected")
        token = devstack.mint_dev_token(dev, "demo-trader", ttl=300)
        step(f"trader token (ES256 JWT, 5 min): {token[:24]}…{token[-8:]}")
        creds = grpc.ssl_channel_credentials(root_certificates=dev.ca.read_bytes())
        async with grpc.aio.secure_channel(target, creds) as channel:
            rpc = channel.unary_unary(SIGN_METHOD, request_serializer=signer_pb2.SignCertificateVerifyRequest.SerializeToString,
                                      response_deserializer=signer_pb2.SignCertificateVerifyResponse.FromString)
            metadata = (("authorization", f"Bearer {token}"),)
            payload = CV_PREFIX + os.urandom(48)
            response = await rpc(signer_pb2.SignCertificateVerifyRequest(payload=payload), metadata=metadata, timeout=5)
            VerifyKey(bytes(proxy.state.enclave_identity.public_key)).verify(payload, response.signature)
            step(f"signed a {len(payload)}-byte CertificateVerify; signature verifies against "
                 f"{to_base58(proxy.state.enclave_identity.public_key)}")
            latencies = []
            for _ in range(50):
                started = time.perf_counter()
                await rpc(signer_pb2.SignCertificateVerifyRequest(payload=CV_PREFIX + os.urandom(32)),
                          metadata=metadata, timeout=5)
                latencies.append((time.perf_counter() - started) * 1000)
            step(f"signing latency over 50 calls: median {statistics.median(latencies):.2f} ms, "
                 f"max {max(latencies):.2f} ms")
            try:
                await rpc(signer_pb2.SignCertificateVerifyRequest(payload=b"\x01" + bytes(129)),
                          metadata=metadata, timeout=5)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                step(f"a transaction-shaped payload was refused: {exc.code().name}: {exc.details()}")
            else:
                print("ERROR: a non-CertificateVerify payload was signed")
                return 1
        try:
            from swqos_client.testing_tpu import demo_handshake
        except ImportError:
            step("QUIC handshake skipped: install swqos-client[quic] (aioquic) to see it")
        else:
            step("QUIC: connecting to a local stand-in TPU as the validator, CertificateVerify signed remotely")
            # On a worker thread with its own loop: aioquic's sign() blocks its loop for the signing
            # round trip, and this loop is the one serving the proxy.
            seen = await asyncio.to_thread(demo_handshake, target, dev.ca.read_bytes(), token)
            for line in seen.lines():
                step(line)
            if seen.identity_seen != bytes(proxy.state.enclave_identity.public_key):
                print("ERROR: the stand-in TPU did not see the validator identity")
                return 1
        step("demo complete")
        return 0
    finally:
        if proxy is not None:
            await proxy.stop(None)
        enclave.terminate()
        await asyncio.to_thread(enclave.wait)


def run_demo(args: argparse.Namespace) -> int:
    try:
        return _run_demo()
    except (devstack.DevDirError, ConfigError) as exc:
        print(f"swqos demo: {exc}", file=sys.stderr)
        return 1


def _run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="swqos-demo-") as tmp:
        return asyncio.run(demo(Path(tmp) / "dev"))
