"""QUIC handshake latency: the SDK's connect_as_validator through the real proxy and enclave, against
the stand-in TPU, next to the same handshake with a local key (the cost of aioquic itself)."""

from __future__ import annotations

import ssl
import statistics
import time
from typing import Any

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from swqos_client import RemoteEd25519PrivateKey, SignerClient, TlsTrust
from swqos_client.certificate import client_certificate
from swqos_client.quic import SHA256_SUITES, connect_as_validator
from swqos_client.testing_tpu import StandInTpu


async def measure(target: str, ca_pem: bytes, token: str, identity: bytes, count: int) -> dict[str, Any]:
    remote_total: list[float] = []
    remote_sign: list[float] = []
    local_total: list[float] = []
    client = SignerClient(target, token=token, trust=TlsTrust(ca_pem=ca_pem, server_name="localhost"), timeout=1.0)
    key = RemoteEd25519PrivateKey(client, public_key=identity)
    local = Ed25519PrivateKey.generate()
    try:
        async with StandInTpu() as tpu:
            # one warm-up each (gRPC connection, imports)
            async with connect_as_validator(tpu.host, tpu.port, key, cipher_suites=SHA256_SUITES):
                pass
            for _ in range(count):
                async with connect_as_validator(tpu.host, tpu.port, key, cipher_suites=SHA256_SUITES) as conn:
                    remote_total.append(conn.handshake.handshake_seconds or 0.0)
                    remote_sign.append(conn.handshake.sign_seconds or 0.0)
            for _ in range(count + 1):
                cfg = QuicConfiguration(is_client=True, alpn_protocols=["solana-tpu"], verify_mode=ssl.CERT_NONE,
                                        cipher_suites=SHA256_SUITES)
                cfg.certificate, cfg.private_key = client_certificate(local.public_key()), local
                t = time.perf_counter()
                async with connect(tpu.host, tpu.port, configuration=cfg):
                    local_total.append(time.perf_counter() - t)
            local_total = local_total[1:]
            accepted = sum(1 for r in tpu.peers if r.accepted and r.public_key == identity)
    finally:
        client.close()

    def summary(xs: list[float]) -> dict[str, float]:
        xs = sorted(xs)
        p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
        return {"n": len(xs), "p50_ms": statistics.median(xs) * 1e3, "p99_ms": p99 * 1e3, "max_ms": xs[-1] * 1e3}

    return {
        "remote_signer_handshake": summary(remote_total),
        "remote_sign_call": summary(remote_sign),
        "local_key_handshake": summary(local_total),
        "accepted_as_validator": accepted,
    }
