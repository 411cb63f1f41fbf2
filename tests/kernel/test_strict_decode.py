"""The strict decode accepts only the canonical encoding, without re-encoding to compare.

Every other spelling of a request that protobuf itself would parse is refused INVALID_ARGUMENT at
``decode``, before any layer runs, and nothing is signed.
"""

from __future__ import annotations

import grpc
import pytest

from swqos_core.errors import Rejection
from swqos_core.layers import Call
from swqos_core.pipeline import Pipeline
from swqos_proto import signer_pb2

from .pipeline_helpers import Recorder, make_call, make_pipeline

PAYLOAD = b" " * 64 + b"TLS 1.3, client CertificateVerify\x00" + bytes(32)  # 130 bytes: a two-byte varint length


def pipeline(layers: Recorder) -> Pipeline:
    return make_pipeline(layers, max_request_bytes=4096)


def call(raw: bytes, rpc: str = "SignCertificateVerify") -> Call:
    return make_call(raw, rpc)


def canonical(payload: bytes) -> bytes:
    return signer_pb2.SignCertificateVerifyRequest(payload=payload).SerializeToString()


@pytest.mark.parametrize("payload", [b"x", b"p" * 127, b"p" * 128, PAYLOAD, b"p" * 300, b"p" * 4000])
async def test_the_canonical_encoding_passes_with_its_payload(payload):
    layers = Recorder()
    c = call(canonical(payload))
    assert await pipeline(layers).sign(c) == b"s" * 64
    assert c.payload == payload and "enclave" in layers.events


NON_CANONICAL = {
    "unknown field": canonical(PAYLOAD) + b"\x10\x01",
    "unknown field first": b"\x10\x01" + canonical(PAYLOAD),
    "unknown length-delimited field": canonical(PAYLOAD) + b"\x12\x01z",
    "field 1 twice (last wins in protobuf)": canonical(b"first") + canonical(PAYLOAD),
    "field 1 twice, same value": canonical(PAYLOAD) + canonical(PAYLOAD),
    "explicit empty field 1": b"\x0a\x00",
    "explicit empty field 1 then the payload": b"\x0a\x00" + canonical(PAYLOAD),
    "overlong length varint": b"\x0a\x82\x81\x00" + PAYLOAD,  # 130 in three bytes instead of two
    "overlong short length": b"\x0a\x81\x00" + b"x",  # 1 in two bytes
    "overlong tag": b"\x8a\x00\x82\x01" + PAYLOAD,  # field 1, wire type 2, tag in two bytes
    "field 1 as a varint": b"\x08\x01",
    "field 1 as fixed64": b"\x09" + bytes(8),
    "field 1 as fixed32": b"\x0d" + bytes(4),
}


@pytest.mark.parametrize("name", sorted(NON_CANONICAL))
async def test_every_other_spelling_is_refused_before_any_layer(name):
    raw = NON_CANONICAL[name]
    layers = Recorder()
    with pytest.raises(Rejection) as info:
        await pipeline(layers).sign(call(raw))
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT and info.value.stage == "decode", name
    assert info.value.label == "malformed"
    assert layers.events == []  # nothing resolved, authenticated or signed


def test_protobuf_itself_parses_these_forms():
    """The refusals above are the pipeline's own rule: protobuf alone accepts each form it can parse."""
    parsed = 0
    for raw in NON_CANONICAL.values():
        try:
            signer_pb2.SignCertificateVerifyRequest.FromString(raw)
            parsed += 1
        except Exception:  # some forms are not protobuf at all; they are refused anyway
            pass
    assert parsed >= 10


async def test_identity_nonce_uses_the_same_rule():
    layers = Recorder()
    ok = call(signer_pb2.GetIdentityRequest(nonce=b"n" * 16).SerializeToString(), "GetIdentity")
    assert (await pipeline(layers).identity(ok))[0] == b"k" * 32 and ok.nonce == b"n" * 16
    empty = call(b"", "GetIdentity")  # no nonce at all: canonical
    assert (await pipeline(Recorder()).identity(empty))[0] == b"k" * 32 and empty.nonce == b""
    for raw in (b"\x0a\x00", b"\x0a\x01a\x0a\x01a", b"\x0a\x81\x00a"):
        layers = Recorder()
        with pytest.raises(Rejection) as info:
            await pipeline(layers).identity(call(raw, "GetIdentity"))
        assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT and info.value.stage == "decode"
        assert layers.events == []
