"""A plain grpcio caller with the generated ``SignerStub``, through the real stack."""

from __future__ import annotations

import grpc
from nacl.signing import VerifyKey

from swqos_proto import signer_pb2, signer_pb2_grpc
from swqos_testing.payloads import server_cv, valid_cv
from tests.core.conftest import TRADER_TOKEN

AUTH = [("authorization", f"Bearer {TRADER_TOKEN}")]


async def test_signer_stub_signs_and_reports_the_identity(stack) -> None:
    stub = signer_pb2_grpc.SignerStub(stack.channel())
    before = await stack.signatures_made()
    identity = await stub.GetIdentity(signer_pb2.GetIdentityRequest(nonce=b"n"), metadata=AUTH, timeout=5)
    assert identity.public_key == stack.identity_key
    payload = valid_cv()
    answer = await stub.SignCertificateVerify(signer_pb2.SignCertificateVerifyRequest(payload=payload),
                                              metadata=AUTH, timeout=5)
    VerifyKey(stack.identity_key).verify(payload, answer.signature)
    assert await stack.signatures_made() == before + 1


async def test_signer_stub_gets_the_refusal_status(stack) -> None:
    stub = signer_pb2_grpc.SignerStub(stack.channel())
    before = await stack.signatures_made()
    try:
        await stub.SignCertificateVerify(signer_pb2.SignCertificateVerifyRequest(payload=server_cv()),
                                         metadata=AUTH, timeout=5)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() is grpc.StatusCode.INVALID_ARGUMENT
    else:
        raise AssertionError("a server CertificateVerify was signed")
    assert await stack.signatures_made() == before
