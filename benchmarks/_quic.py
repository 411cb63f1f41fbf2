"""QUIC handshake latency: the SDK's connect_as_validator through the real proxy and enclave, against
the stand-in TPU, next to the same handshake with a local key (the cost of aioquic itself).

Two phases of ``count`` handshakes each: *warm* (back to back) and *after idle* (``idle_s`` of
silence before each, as a validator's client sees between bursts: the sign call then runs on a
channel that sat idle). Remote and local handshakes alternate one by one (the order flipping each
time), so both see the same machine.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks._report import pct
from swqos_client import RemoteEd25519PrivateKey, SignerClient, TlsTrust
from swqos_client.certificate import client_certificate
from swqos_client.quic import SHA256_SUITES, connect_as_validator
from swqos_client.testing_tpu import StandInTpu


def summary(xs: list[float]) -> dict[str, float | int]:
    xs = sorted(xs)
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50_ms": round(pct(xs, 0.5) * 1e3, 3), "p90_ms": round(pct(xs, 0.9) * 1e3, 3),
            "p99_ms": round(pct(xs, 0.99) * 1e3, 3), "max_ms": round(xs[-1] * 1e3, 3)}


async def measure(target: str, ca_pem: bytes, token: str, identity: bytes, count: int,
                  idle_s: float = 0.2) -> dict[str, Any]:
    client = SignerClient(target, token=token, trust=TlsTrust(ca_pem=ca_pem, server_name="localhost"), timeout=1.0)
    key = RemoteEd25519PrivateKey(client, public_key=identity)
    local = Ed25519PrivateKey.generate()
    out: dict[str, Any] = {"idle_s": idle_s}
    try:
        async with StandInTpu() as tpu:

            async def remote(into: dict[str, list[float]]) -> None:
                async with connect_as_validator(tpu.host, tpu.port, key, cipher_suites=SHA256_SUITES) as conn:
                    into["remote_total"].append(conn.handshake.handshake_seconds or 0.0)
                    into["remote_sign"].append(conn.handshake.sign_seconds or 0.0)

            async def local_key(into: dict[str, list[float]]) -> None:
                cfg = QuicConfiguration(is_client=True, alpn_protocols=["solana-tpu"], verify_mode=ssl.CERT_NONE,
                                        cipher_suites=SHA256_SUITES)
                cfg.certificate, cfg.private_key = client_certificate(local.public_key()), local
                t = time.perf_counter()
                async with connect(tpu.host, tpu.port, configuration=cfg):
                    into["local_total"].append(time.perf_counter() - t)

            warmup: dict[str, list[float]] = {"remote_total": [], "remote_sign": [], "local_total": []}
            await remote(warmup)  # gRPC connection, imports
            await local_key(warmup)
            for phase, idle in (("warm", 0.0), ("after_idle", idle_s)):
                got: dict[str, list[float]] = {"remote_total": [], "remote_sign": [], "local_total": []}
                for i in range(count):
                    if idle:
                        await asyncio.sleep(idle)
                    first, second = (remote, local_key) if i % 2 == 0 else (local_key, remote)
                    await first(got)
                    await second(got)
                out[phase] = {
                    "remote_signer_handshake": summary(got["remote_total"]),
                    "remote_sign_call": summary(got["remote_sign"]),
                    "local_key_handshake": summary(got["local_total"]),
                }
                r, loc = out[phase]["remote_signer_handshake"], out[phase]["local_key_handshake"]
                out[phase]["remote_minus_local_p50_ms"] = round(r["p50_ms"] - loc["p50_ms"], 3)
            out["accepted_as_validator"] = sum(1 for r in tpu.peers if r.accepted and r.public_key == identity)
            out["handshakes_per_phase"] = count
    finally:
        client.close()
    return out
