"""Load generator worker (one per process): grpc.aio over TLS 1.3, closed loop or paced open loop.

Why Python and not h2load: h2load counts an HTTP 200 as success, but every gRPC refusal is also an
HTTP 200 (the status travels in trailers), it reports no percentiles beyond mean/sd, and it cannot
vary the token per request (cold cache) or the client address header per stream (flood). A
multi-process grpc.aio client checks every status, records every latency, and does all three; the
bare-echo run (a) in the same harness shows where the generator itself saturates.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from swqos_proto import SIGN_METHOD, signer_pb2

PAD = b" " * 64 + b"TLS 1.3, client CertificateVerify\x00"


def mint_tokens(spec: dict[str, Any], count: int) -> list[str]:
    key = load_pem_private_key(spec["issuer_key_pem"], password=None)
    now = int(time.time())
    out = []
    for _ in range(count):
        claims = {"iss": spec["iss"], "aud": spec["aud"], "sub": spec["sub"], "iat": now, "exp": now + 600,
                  "jti": secrets.token_hex(16)}
        out.append(jwt.encode(claims, key, algorithm="ES256", headers={"kid": spec["kid"], "typ": "JWT"}))
    return out


async def _run(job: dict[str, Any]) -> dict[str, Any]:
    creds = grpc.ssl_channel_credentials(root_certificates=job["ca_pem"])
    opts = [("grpc.ssl_target_name_override", "localhost")]
    channels = [grpc.aio.secure_channel(job["target"], creds, options=[*opts, ("grpc.channel_id", i)])
                for i in range(job.get("channels", 1))]
    stubs = [ch.unary_unary(SIGN_METHOD, request_serializer=signer_pb2.SignCertificateVerifyRequest.SerializeToString,
                            response_deserializer=signer_pb2.SignCertificateVerifyResponse.FromString)
             for ch in channels]
    extra = [tuple(x) for x in job.get("metadata", [])]
    cold = job.get("cold")
    tokens: list[str] = mint_tokens(cold, job["cold_count"]) if cold else []
    fixed = job.get("token")
    codes: Counter[str] = Counter()
    lat: list[float] = []
    state = {"i": 0, "sent": 0}
    recording = False
    hash_len = job.get("hash_len", 32)

    def next_md() -> list[tuple[str, str]] | None:
        if cold:
            if state["i"] >= len(tokens):
                return None
            tok = tokens[state["i"]]
            state["i"] += 1
        else:
            tok = fixed
        return [("authorization", f"Bearer {tok}"), *extra]

    async def one(start: float, md: list[tuple[str, str]]) -> None:
        stub = stubs[state["sent"] % len(stubs)]
        state["sent"] += 1
        req = signer_pb2.SignCertificateVerifyRequest(payload=PAD + os.urandom(hash_len))
        try:
            await stub(req, metadata=md, timeout=job.get("timeout", 5.0))
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        if recording:
            codes[code] += 1
            if code == "OK":
                lat.append(time.perf_counter() - start)

    async def closed(until: float) -> None:
        while time.perf_counter() < until:
            md = next_md()
            if md is None:
                codes["TOKENS_EXHAUSTED"] += 1
                return
            await one(time.perf_counter(), md)

    async def paced(until: float, rate: float) -> None:
        # Open loop: latency counts from the scheduled send time, so a stalled server is not hidden
        # by the generator waiting for it (coordinated omission).
        interval = 1.0 / rate
        t0 = time.perf_counter()
        n = 0
        pending: set[asyncio.Task] = set()
        while True:
            at = t0 + n * interval
            if at >= until:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            md = next_md()
            if md is None:
                codes["TOKENS_EXHAUSTED"] += 1
                break
            task = asyncio.create_task(one(at, md))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        if pending:
            await asyncio.wait(pending)

    # warm-up: connections, TLS, server-side caches for the fixed token
    warm_until = time.perf_counter() + job.get("warmup", 0.5)
    if job["mode"] == "closed":
        await asyncio.gather(*(closed(warm_until) for _ in range(job["concurrency"])))
    else:
        await paced(warm_until, job["rate"])
    recording = True
    start = time.perf_counter()
    until = start + job["duration"]
    if job["mode"] == "closed":
        await asyncio.gather(*(closed(until) for _ in range(job["concurrency"])))
    else:
        await paced(until, job["rate"])
    elapsed = time.perf_counter() - start
    for ch in channels:
        await ch.close()
    return {"codes": dict(codes), "lat": lat, "elapsed": elapsed}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_run(job))
