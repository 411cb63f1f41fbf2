"""QUIC handshake latency: the SDK's connect_as_validator through the real proxy and enclave, against
the stand-in TPU, next to the same handshake with a local key (the cost of aioquic itself).

Three phases of ``count`` handshakes each: *warm* (back to back), *after idle* (``idle_s`` of
silence before each, as a validator's client sees between bursts: the sign call then runs on a
channel that sat idle) and *after idle, keep_warm* (the same, with the SDK's ``keep_warm``
health checks on the channel). Remote and local handshakes alternate one by one (the order
flipping each time), so both see the same machine.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from typing import Any

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks._report import pct
from swqos_client import RemoteEd25519PrivateKey, SignerClient, TlsTrust
from swqos_client.certificate import client_certificate
from swqos_client.quic import SHA256_SUITES, HandshakeFailed, connect_as_validator
from swqos_client.testing_tpu import StandInTpu


def summary(xs: list[float]) -> dict[str, float | int]:
    xs = sorted(xs)
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50_ms": round(pct(xs, 0.5) * 1e3, 3), "p90_ms": round(pct(xs, 0.9) * 1e3, 3),
            "p99_ms": round(pct(xs, 0.99) * 1e3, 3), "max_ms": round(xs[-1] * 1e3, 3)}


async def measure(target: str, ca_pem: bytes, token: str, identity: bytes, count: int,
                  idle_s: float = 0.2, keep_warm_s: float = 0.05) -> dict[str, Any]:
    trust = TlsTrust(ca_pem=ca_pem, server_name="localhost")
    client = SignerClient(target, token=token, trust=trust, timeout=1.0)
    warm_client = SignerClient(target, token=token, trust=trust, timeout=1.0, keep_warm=keep_warm_s)
    keys = {False: RemoteEd25519PrivateKey(client, public_key=identity),
            True: RemoteEd25519PrivateKey(warm_client, public_key=identity)}
    local = Ed25519PrivateKey.generate()
    out: dict[str, Any] = {"idle_s": idle_s, "keep_warm_s": keep_warm_s}
    try:
        async with StandInTpu() as tpu:

            key = keys[False]

            async def remote(into: dict[str, list[float]]) -> None:
                try:
                    async with connect_as_validator(tpu.host, tpu.port, key, cipher_suites=SHA256_SUITES) as conn:
                        into["remote_total"].append(conn.handshake.handshake_seconds or 0.0)
                        into["remote_sign"].append(conn.handshake.sign_seconds or 0.0)
                except (HandshakeFailed, ConnectionError, TimeoutError) as exc:  # counted, not fatal
                    failures[f"remote: {type(exc).__name__}: {str(exc)[:120]}"] += 1

            async def local_key(into: dict[str, list[float]]) -> None:
                cfg = QuicConfiguration(is_client=True, alpn_protocols=["solana-tpu"], verify_mode=ssl.CERT_NONE,
                                        cipher_suites=SHA256_SUITES)
                cfg.certificate, cfg.private_key = client_certificate(local.public_key()), local
                t = time.perf_counter()
                try:
                    async with connect(tpu.host, tpu.port, configuration=cfg):
                        into["local_total"].append(time.perf_counter() - t)
                except (ConnectionError, TimeoutError) as exc:
                    failures[f"local: {type(exc).__name__}"] += 1

            failures: Counter[str] = Counter()
            warmup: dict[str, list[float]] = {"remote_total": [], "remote_sign": [], "local_total": []}
            await remote(warmup)  # gRPC connection, imports
            key = keys[True]
            await remote(warmup)
            await local_key(warmup)
            for phase, idle, kept in (("warm", 0.0, False), ("after_idle", idle_s, False),
                                      ("after_idle_keep_warm", idle_s, True)):
                key = keys[kept]
                failures = Counter()
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
                out[phase]["failed"] = dict(failures)
                r, loc = out[phase]["remote_signer_handshake"], out[phase]["local_key_handshake"]
                if r.get("p50_ms") is not None and loc.get("p50_ms") is not None:
                    out[phase]["remote_minus_local_p50_ms"] = round(r["p50_ms"] - loc["p50_ms"], 3)
            out["accepted_as_validator"] = sum(1 for r in tpu.peers if r.accepted and r.public_key == identity)
            out["handshakes_per_phase"] = count
            out["keep_warm_health_checks"] = warm_client.warm_pings
    finally:
        client.close()
        warm_client.close()
    return out


def single_calls(targets: dict[str, str], ca_pem: bytes, token: str, count: int, gap_s: float) -> dict[str, Any]:
    """The sign call a handshake makes, alone: one SignCertificateVerify at a time to each target
    (the bare echo's answer is the floor any gRPC call pays here), after ``gap_s`` of silence,
    about what a handshake's own work leaves between two signs. Targets alternate call by call,
    order flipping, so both see the same machine."""
    from swqos_testing.payloads import valid_cv

    trust = TlsTrust(ca_pem=ca_pem, server_name="localhost")
    clients = {name: SignerClient(addr, token=token, trust=trust, timeout=1.0) for name, addr in targets.items()}
    payload = valid_cv()
    lat: dict[str, list[float]] = {name: [] for name in targets}
    failed: Counter[str] = Counter()
    names = list(targets)
    try:
        for c in clients.values():  # channels and TLS
            for _ in range(5):
                c.sign_certificate_verify(payload)
        for i in range(count):
            for name in names if i % 2 == 0 else names[::-1]:
                time.sleep(gap_s)
                t = time.perf_counter()
                try:
                    clients[name].sign_certificate_verify(payload)
                    lat[name].append(time.perf_counter() - t)
                except Exception as exc:  # counted, not fatal
                    failed[f"{name}: {type(exc).__name__}"] += 1
    finally:
        for c in clients.values():
            c.close()
    out: dict[str, Any] = {"gap_s": gap_s, "failed": dict(failed)}
    out |= {name: summary(xs) for name, xs in lat.items()}
    if all(out[n].get("p50_ms") is not None for n in ("echo", "deployed")):
        out["deployed_minus_echo_p50_ms"] = round(out["deployed"]["p50_ms"] - out["echo"]["p50_ms"], 3)
    return out
