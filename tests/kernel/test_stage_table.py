"""The stage table is the order: what runs, in which order, derives from ``STAGES`` alone."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from swqos_core.errors import Rejection
from swqos_core.layers import Call
from swqos_core.pipeline import IDENTITY_PREFIX, STAGE_NAMES, STAGES, Pipeline, layer_start_order
from swqos_proto import signer_pb2

from .pipeline_helpers import Recorder, make_call, make_pipeline

#: What a SignCertificateVerify must go through, in this order. Written out on purpose: swapping
#: any two rows of STAGES makes the recorded order differ from this list.
EXPECTED = ["decode", "admission", "client_ip", "address_limit", "auth", "authorize", "subject_limit",
            "validate", "enclave"]


def make(recorder: Recorder, stages=STAGES) -> Pipeline:
    return make_pipeline(recorder, stages)


def new_call(rpc="SignCertificateVerify", raw=None) -> Call:
    if raw is None:
        raw = (signer_pb2.SignCertificateVerifyRequest(payload=b"p" * 130) if rpc == "SignCertificateVerify"
               else signer_pb2.GetIdentityRequest(nonce=b"n")).SerializeToString()
    return make_call(raw, rpc)


def traced(ran: list[str]):
    def wrap(stage):
        async def run(p, call):
            ran.append(stage.name)
            await stage.run(p, call)
        return dataclasses.replace(stage, run=run)
    return tuple(wrap(s) for s in STAGES)


async def test_sign_runs_the_table_top_to_bottom():
    recorder, ran = Recorder(), []
    signature = await make(recorder, traced(ran)).sign(new_call())
    assert signature == b"s" * 64
    assert ran == EXPECTED
    # The layers themselves saw the same order (a stage calling another stage's layers shows here).
    assert recorder.events == [s for s in EXPECTED if s in recorder.events]
    assert recorder.events == ["client_ip", "address_limit", "auth", "subject_limit", "validate", "enclave"]


async def test_identity_runs_the_prefix_up_to_auth_then_asks_the_enclave():
    recorder, ran = Recorder(), []
    public_key, _ = await make(recorder, traced(ran)).identity(new_call("GetIdentity"))
    assert public_key == b"k" * 32
    assert ran == EXPECTED[: EXPECTED.index("auth") + 1] == list(STAGE_NAMES[:IDENTITY_PREFIX])
    assert recorder.events[-1] == "enclave_identity" and "enclave" not in recorder.events


async def test_a_fault_becomes_the_refusal_of_the_stage_it_happened_in():
    for stage in STAGES:
        async def boom(p, call):
            raise RuntimeError("bug")
        stages = tuple(dataclasses.replace(s, run=boom) if s.name == stage.name else s for s in STAGES)
        recorder = Recorder()
        with pytest.raises(Rejection) as info:
            await make(recorder, stages).sign(new_call())
        assert info.value.code is stage.fault and info.value.stage == stage.name and info.value.label == "fault"
        assert "enclave" not in recorder.events  # nothing was signed


async def test_decode_refuses_non_canonical_bodies_before_any_layer_runs():
    canonical = signer_pb2.SignCertificateVerifyRequest(payload=b"p").SerializeToString()
    for raw, code in [(canonical + b"\x10\x01", grpc.StatusCode.INVALID_ARGUMENT),  # unknown field
                      (b"\xff", grpc.StatusCode.INVALID_ARGUMENT),
                      (b"\x0a\x81\x08" + b"p" * 1025, grpc.StatusCode.RESOURCE_EXHAUSTED)]:
        recorder = Recorder()
        with pytest.raises(Rejection) as info:
            await make(recorder).sign(new_call(raw=raw))
        assert info.value.code is code and info.value.stage == "decode"
        assert recorder.events == []


def test_start_order_is_background_first_then_by_first_use_in_the_table():
    assert layer_start_order() == ("store", "revocation", "service", "client_ip", "rate_limit", "auth", "validate")
