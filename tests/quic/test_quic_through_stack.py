"""The proof: a trader opens a real QUIC connection to a (stand-in) leader as the validator, with the
client CertificateVerify signed by the enclave through the host-proxy over real gRPC/TLS 1.3.

Negative cases: a token for another validator (audience), a revoked trader, a halted proxy. In each
the handshake fails, the leader never accepts the connection, and the enclave's own counter shows
that nothing was signed.
"""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("aioquic")

from swqos_client import (
    PermissionDenied,
    RemoteEd25519PrivateKey,
    RetryPolicy,
    SignerClient,
    TlsTrust,
    Unauthenticated,
    Unavailable,
)
from swqos_client.quic import SHA256_SUITES, SHA384_SUITES, HandshakeFailed, connect_as_validator
from swqos_client.testing_tpu import StandInTpu
from swqos_testing.payloads import valid_cv
from swqos_testing.stack import running_stack

pytestmark = pytest.mark.slow

#: A revoked trader's authentic token: "valid credential not allowed".
REVOKED_ERROR = PermissionDenied
# A quick give-up on UNAVAILABLE keeps the halted case short; the point is that it fails, not how fast.
QUICK = RetryPolicy(max_attempts=2, initial_backoff=0.01)


def _client(stack, token: str) -> SignerClient:
    return SignerClient(
        stack.target,
        token=token,
        trust=TlsTrust(ca_pem=stack.ca_pem, server_name="localhost"),
        timeout=1.5,
        retry=QUICK,
    )


def in_own_loop(scenario):
    """Run the trader side (stand-in leader + QUIC client) on its own thread and event loop.

    aioquic calls ``sign()`` synchronously, so the remote signing RPC blocks the loop the QUIC client
    runs on. In production the proxy is another machine; here the harness runs the proxy in the test's
    loop, which must stay free to answer.
    """
    return asyncio.to_thread(asyncio.run, scenario())


async def _send_and_wait(conn, tpu: StandInTpu, data: bytes):
    sid = conn._quic.get_next_available_stream_id(is_unidirectional=True)
    conn._quic.send_stream_data(sid, data, end_stream=True)
    conn.transmit()
    return await tpu.wait_for(lambda r: r.accepted and r.data == data)


@pytest.mark.parametrize(("suites", "size"), [(SHA256_SUITES, 130), (SHA384_SUITES, 146)])
async def test_handshake_as_validator_through_proxy_and_enclave(tmp_path, suites, size) -> None:
    async with running_stack(tmp_path) as stack:
        before = await stack.signatures_made()
        client = _client(stack, stack.token(sub="trader-1"))
        try:
            # identity fetched through GetIdentity (not pinned): it must be the enclave's key
            key = RemoteEd25519PrivateKey(client)

            async def scenario():
                async with StandInTpu() as tpu:
                    async with connect_as_validator(tpu.host, tpu.port, key, cipher_suites=suites) as conn:
                        rec = await _send_and_wait(conn, tpu, b"\x01" + b"tx" * 40)
                        assert conn.handshake.payload_size == size
                        return rec

            rec = await in_own_loop(scenario)
            assert rec.public_key == stack.identity_key
            assert rec.matches_agave_template
            assert key.public_key_bytes() == stack.identity_key
            assert key.signatures == 1
            assert await stack.signatures_made() == before + 1
        finally:
            client.close()


async def _assert_refused(stack, token: str, expected: type, reason_part: str) -> None:
    before = await stack.signatures_made()
    client = _client(stack, token)
    try:
        key = RemoteEd25519PrivateKey(client, public_key=stack.identity_key)

        async def scenario():
            async with StandInTpu() as tpu:
                with pytest.raises(HandshakeFailed) as info:
                    async with connect_as_validator(tpu.host, tpu.port, key):
                        pass
                assert not any(r.accepted for r in tpu.peers)
                return info

        info = await in_own_loop(scenario)
        cause = info.value.__cause__
        assert isinstance(cause, expected), repr(cause)
        assert reason_part in cause.reason, cause.reason
        assert key.signatures == 0
        assert await stack.signatures_made() == before
    finally:
        client.close()


async def test_token_for_another_validator_is_refused(tmp_path) -> None:
    async with running_stack(tmp_path) as stack:
        other = "validator:11111111111111111111111111111111"
        await _assert_refused(stack, stack.token(sub="trader-1", aud=other), Unauthenticated, "aud")


async def test_revoked_trader_is_refused(tmp_path) -> None:
    revoked = tmp_path / "revoked.json"
    revoked.write_text(json.dumps({"sub": ["trader-gone"]}))
    proxy = {"layers": {"auth": {"jwt": {"revocation_file": str(revoked)}}}}
    async with running_stack(tmp_path, proxy=proxy) as stack:
        # the same stack still serves a trader in good standing (the refusal is about the subject)
        ok = await stack.sign(valid_cv(), token=stack.token(sub="trader-ok"))
        assert ok.response is not None, ok.details
        await _assert_refused(stack, stack.token(sub="trader-gone"), REVOKED_ERROR, "revoked")


async def test_halted_proxy_is_refused(tmp_path) -> None:
    async with running_stack(tmp_path) as stack:
        stack.state.halt("test-operator", "halted for the test")
        await _assert_refused(stack, stack.token(sub="trader-1"), Unavailable, "halted")
