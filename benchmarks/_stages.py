"""Micro-costs measured in-process with the same libraries the stack uses (not the live run)."""

from __future__ import annotations

import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _per_op(fn, seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= end:
            return (now - t0) / n


def measure(seconds: float = 0.3) -> dict[str, Any]:
    msg = b" " * 64 + b"TLS 1.3, client CertificateVerify\x00" + bytes(32)
    out: dict[str, Any] = {}
    k = Ed25519PrivateKey.generate()
    out["ed25519_sign_cryptography_us"] = _per_op(lambda: k.sign(msg), seconds) * 1e6
    try:
        import nacl.signing

        nk = nacl.signing.SigningKey.generate()
        out["ed25519_sign_pynacl_us"] = _per_op(lambda: nk.sign(msg), seconds) * 1e6
    except ImportError:
        pass
    ek = ec.generate_private_key(ec.SECP256R1())
    pub = ek.public_key()
    tok = jwt.encode({"sub": "t", "aud": "a", "iss": "i", "exp": int(time.time()) + 600}, ek, algorithm="ES256")
    out["es256_jwt_verify_pyjwt_us"] = _per_op(
        lambda: jwt.decode(tok, pub, algorithms=["ES256"], audience="a", issuer="i"), seconds) * 1e6
    out["es256_jwt_mint_pyjwt_us"] = _per_op(
        lambda: jwt.encode({"sub": "t", "exp": 2}, ek, algorithm="ES256"), seconds) * 1e6
    # What a cached token costs per request when its issuer happened to sign it with a high s
    # (half of a standard ES256 issuer's tokens): the normalisation before the second lookup.
    from swqos_auth_jwt.jwt_auth import low_s_spelling

    high = next(v for v in (f"Bearer {jwt.encode({'n': i}, ek, algorithm='ES256')}" for i in range(64))
                if low_s_spelling(v) != v)
    out["jwt_high_s_normalise_us"] = _per_op(lambda: low_s_spelling(high), seconds) * 1e6
    return out


def low_s_token(mint) -> str:
    """A token from ``mint()`` whose signature has a low s, so every run's cached-token path costs
    the same: half of ES256 tokens have a high s and pay ``jwt_high_s_normalise_us`` more."""
    from swqos_auth_jwt.jwt_auth import low_s_spelling

    for _ in range(64):
        token = mint()
        if low_s_spelling(f"Bearer {token}") == f"Bearer {token}":
            return token
    raise RuntimeError("64 tokens in a row with a high s: the issuer is not a standard ES256 signer")


def _thread_per_op(fn, n: int) -> float:
    """Thread CPU per call, µs (what the event loop would spend), best of three runs of ``n``."""
    best = float("inf")
    for _ in range(3):
        t0 = time.thread_time()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time() - t0) / n)
    return best * 1e6


def observer_path(n: int = 20_000) -> dict[str, float]:
    """The decision path on the loop, in-process: building a Decision, then each swqos-ops observer
    (request metrics, known traders, the audit hand-off with its writer thread running)."""
    import tempfile
    from pathlib import Path

    from swqos_core.extensions import Decision
    from swqos_core.pipeline import STAGE_NAMES
    from swqos_ops.audit import AuditLog
    from swqos_ops.metrics import MetricsEndpoint
    from swqos_ops.operations import KnownSubjects

    timings = dict.fromkeys(STAGE_NAMES, 1e-5)

    def build() -> Decision:
        return Decision(rpc="SignCertificateVerify", request_id="0123456789abcdef", outcome="OK", stage=None,
                        label=None, reason=None, subject="bench-trader", client="127.0.0.1", payload_len=130,
                        latency=0.0012, stage_seconds=timings, payload=b"x" * 130)

    d = build()
    metrics, known = MetricsEndpoint(()), KnownSubjects(100_000)
    with tempfile.TemporaryDirectory() as tmp:
        audit = AuditLog(Path(tmp) / "audit.jsonl")
        audit.start()
        try:
            out = {
                "decision_build_us": _thread_per_op(build, n),
                "request_metrics_us": _thread_per_op(lambda: metrics.requests.observe(d), n),
                "known_traders_us": _thread_per_op(lambda: known.observe(d), n),
                "audit_handoff_us": _thread_per_op(lambda: audit.decision(d), n),
            }
        finally:
            audit.close()
    out["total_us"] = sum(out.values())
    return out


def pipeline_path(n: int = 20_000) -> dict[str, float]:
    """Pipeline.sign with layers that do nothing, in-process: the kernel's own cost per call, with
    the never-waiting stages called directly (as shipped) and with every stage awaited."""
    import asyncio
    import dataclasses

    from swqos_core.layers import Call, ClientAddress, Principal, RequestHead
    from swqos_core.pipeline import STAGES, Pipeline
    from swqos_core.state import ServiceState
    from swqos_proto import signer_pb2

    class Nothing:
        async def resolve(self, head):
            return ClientAddress(None, "bench", head.peer)

        async def check_address(self, head, client):
            return None

        async def authenticate(self, head, client):
            return Principal("bench", "trader", "bench")

        async def check_principal(self, head, principal, client):
            return None

        async def validate(self, call):
            return None

        async def sign(self, payload, trace_id):
            return b"s" * 64

    raw = signer_pb2.SignCertificateVerifyRequest(payload=b" " * 64 + b"TLS 1.3, client CertificateVerify\x00"
                                                  + bytes(32)).SerializeToString()
    state = ServiceState("bench")
    state.set_enclave(True)

    def awaited(stage):
        async def run(p, call):
            await stage.run(p, call)
        return dataclasses.replace(stage, run=run)

    layers = Nothing()
    out = {}
    for name, stages in (("pipeline_as_shipped_us", STAGES), ("pipeline_every_stage_awaited_us",
                                                              tuple(awaited(s) for s in STAGES))):
        p = Pipeline(client_ip=(layers,), rate_limit=(layers,), auth=(layers,), validate=(layers,),  # type: ignore[arg-type]
                     enclave=layers, state=state, stages=stages)  # type: ignore[arg-type]

        async def many(p: Pipeline = p) -> float:
            best = float("inf")
            for _ in range(3):
                t0 = time.thread_time()
                for _ in range(n):
                    head = RequestHead(rpc="SignCertificateVerify", peer="ipv4:127.0.0.1:1", metadata=(),
                                       request_id="ab")
                    await p.sign(Call(head=head, payload=b"", deadline=time.monotonic() + 5,
                                      started=time.monotonic(), raw=raw))
                best = min(best, (time.thread_time() - t0) / n)
            return best * 1e6

        out[name] = asyncio.run(many())
    m = signer_pb2.SignCertificateVerifyRequest.FromString(raw)

    def reencode() -> bytes | None:
        x = signer_pb2.SignCertificateVerifyRequest.FromString(raw)
        x.DiscardUnknownFields()
        return x.payload if x.SerializeToString() == raw else None

    def header() -> bytes | None:
        v = signer_pb2.SignCertificateVerifyRequest.FromString(raw).payload
        return v if _is_canonical(raw, v) else None

    from swqos_core.pipeline import _is_canonical

    for _ in range(2):  # interleaved, best of each
        out["decode_with_reencode_check_us"] = min(out.get("decode_with_reencode_check_us", 1e9),
                                                   _thread_per_op(reencode, n))
        out["decode_with_header_check_us"] = min(out.get("decode_with_header_check_us", 1e9),
                                                 _thread_per_op(header, n))
    del m
    return out


def enclave_path(n: int = 5_000) -> dict[str, float]:
    """The enclave's answer to one SIGN frame, in-process (thread CPU, µs): frame parse, payload
    match, Ed25519 signature, and the whole ``EnclaveSigner.answer``. The rest of the enclave's CPU
    per signature in the live run is its event loop and the socket (a read and a write per batch)."""
    import tempfile
    from pathlib import Path

    from swqos_core import config
    from swqos_core.enclave.protocol import LENGTH, FrameType, encode, parse_frame
    from swqos_core.enclave.signer import EnclaveSigner
    from swqos_core.plugins import build_app
    from swqos_dev import devstack

    payload = b" " * 64 + b"TLS 1.3, client CertificateVerify\x00" + bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        dev = devstack.prepare(Path(tmp) / "dev")
        devstack.write_toml(dev.enclave_config, devstack.enclave_config(dev))
        enclave = EnclaveSigner(build_app(config.load(dev.enclave_config, process="enclave")))
        enclave.unseal()
        body = encode(FrameType.SIGN, 1, 2, payload)[LENGTH.size:]
        frame = parse_frame(body)
        return {
            "parse_frame_us": _thread_per_op(lambda: parse_frame(body), n),
            "payload_match_us": _thread_per_op(lambda: enclave.matcher.match(payload), n),
            "ed25519_sign_us": _thread_per_op(lambda: enclave.signer.sign(payload), n),
            "answer_us": _thread_per_op(lambda: enclave.answer(frame, None), n),  # type: ignore[arg-type]
        }
