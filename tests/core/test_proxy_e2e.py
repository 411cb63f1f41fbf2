"""The host-proxy over real gRPC and TLS 1.3, with a real enclave process on a Unix socket.

Every refusal asserts its status and that the enclave's own signature counter did not move.
"""

from __future__ import annotations

import asyncio
import ssl

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from nacl.signing import VerifyKey

from swqos_core import hookimpl
from swqos_core.errors import ConfigError
from swqos_testing.payloads import server_cv, valid_cv
from tests.core.conftest import PROBE_TOKEN, TRADER_TOKEN, static_stack


async def refused(stack, code, *, before, **call):
    """Make a SignCertificateVerify call that must fail with ``code`` and sign nothing."""
    result = await stack.sign(**call)
    assert result.code is code, (result.code, result.details)
    assert await stack.signatures_made() == before
    return result


@pytest.mark.parametrize("hash_len", [32, 48])
async def test_signs_a_client_certificate_verify(stack, hash_len):
    payload = valid_cv(hash_len)
    before = await stack.signatures_made()
    result = await stack.sign(payload, token=TRADER_TOKEN)
    assert result.code is grpc.StatusCode.OK
    VerifyKey(stack.identity_key).verify(payload, result.response.signature)
    assert await stack.signatures_made() == before + 1


async def test_non_cv_payload_is_invalid_argument_with_a_reason(stack):
    before = await stack.signatures_made()
    result = await refused(stack, grpc.StatusCode.INVALID_ARGUMENT, before=before, payload=b"\x01" * 130,
                           token=TRADER_TOKEN)
    assert "64 spaces" in result.details
    result = await refused(stack, grpc.StatusCode.INVALID_ARGUMENT, before=before, payload=server_cv(),
                           token=TRADER_TOKEN)
    assert "server CertificateVerify" in result.details


async def test_body_over_1kb_is_refused_before_authentication(stack):
    before = await stack.signatures_made()
    result = await refused(stack, grpc.StatusCode.RESOURCE_EXHAUSTED, before=before,
                           payload=b" " * 1100, token=None)
    assert "limit is 1024" in result.details


async def test_body_far_over_the_cap_is_refused_by_the_transport(stack):
    before = await stack.signatures_made()
    await refused(stack, grpc.StatusCode.RESOURCE_EXHAUSTED, before=before, payload=b" " * 20_000, token=None)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "payload is missing"),  # an empty message: no payload
        (b"\x08\x01", "unexpected fields"),  # field 1 as a varint: wrong wire type
        (b"\x0a\x02hi\x10\x01", "unexpected fields"),  # an unknown field 2
        (b"\x0a\x01a\x0a\x01b", "unexpected fields"),  # field 1 twice
        (b"\xff\xff\xff", "malformed request"),  # not protobuf at all
    ],
)
async def test_malformed_bodies_are_invalid_argument(stack, raw, why):
    before = await stack.signatures_made()
    result = await refused(stack, grpc.StatusCode.INVALID_ARGUMENT, before=before, raw=raw, token=TRADER_TOKEN)
    assert why in result.details


async def test_malformed_body_is_refused_before_authentication(stack):
    before = await stack.signatures_made()
    await refused(stack, grpc.StatusCode.INVALID_ARGUMENT, before=before, raw=b"\x08\x01", token=None)


async def test_missing_or_unknown_credential_is_unauthenticated(stack):
    before = await stack.signatures_made()
    await refused(stack, grpc.StatusCode.UNAUTHENTICATED, before=before, payload=valid_cv(), token=None)
    await refused(stack, grpc.StatusCode.UNAUTHENTICATED, before=before, payload=valid_cv(), token="nope")


async def test_probe_role_may_read_identity_but_never_sign(stack):
    before = await stack.signatures_made()
    result = await refused(stack, grpc.StatusCode.PERMISSION_DENIED, before=before, payload=valid_cv(),
                           token=PROBE_TOKEN)
    assert "may not sign" in result.details
    identity = await stack.identity(b"nonce", token=PROBE_TOKEN)
    assert identity.code is grpc.StatusCode.OK
    assert identity.response.public_key == stack.identity_key
    assert identity.response.attestation_document == b""  # the file key provider has none


async def test_identity_needs_a_credential_and_a_short_nonce(stack):
    assert (await stack.identity(token=None)).code is grpc.StatusCode.UNAUTHENTICATED
    assert (await stack.identity(b"n" * 65, token=TRADER_TOKEN)).code is grpc.StatusCode.INVALID_ARGUMENT


async def health(stack) -> int:
    stub = health_pb2_grpc.HealthStub(stack.channel())
    response = await stub.Check(health_pb2.HealthCheckRequest(service="swqos.v1.Signer"), timeout=5)
    return response.status


async def test_halt_and_drain_refuse_with_unavailable_and_turn_health_off(stack):
    before = await stack.signatures_made()
    assert await health(stack) == health_pb2.HealthCheckResponse.SERVING
    stack.state.halt("kill_switch", "release 0.1.0 revoked")
    await asyncio.sleep(0.05)
    result = await refused(stack, grpc.StatusCode.UNAVAILABLE, before=before, payload=valid_cv(), token=TRADER_TOKEN)
    assert "halted" in result.details
    assert await health(stack) == health_pb2.HealthCheckResponse.NOT_SERVING
    stack.state.lift("kill_switch")
    stack.state.set_draining(True)
    await refused(stack, grpc.StatusCode.UNAVAILABLE, before=before, payload=valid_cv(), token=TRADER_TOKEN)
    stack.state.set_draining(False)
    await asyncio.sleep(0.05)
    assert await health(stack) == health_pb2.HealthCheckResponse.SERVING
    assert (await stack.sign(valid_cv(), token=TRADER_TOKEN)).code is grpc.StatusCode.OK


async def test_enclave_dies_mid_run_then_both_recover(stack):
    assert (await stack.sign(valid_cv(), token=TRADER_TOKEN)).code is grpc.StatusCode.OK
    await stack.kill_enclave()
    await stack.wait_serving(False)
    result = await stack.sign(valid_cv(), token=TRADER_TOKEN)
    assert result.code is grpc.StatusCode.UNAVAILABLE
    assert await health(stack) == health_pb2.HealthCheckResponse.NOT_SERVING
    await stack.start_enclave()
    await stack.wait_serving(True)
    assert (await stack.sign(valid_cv(), token=TRADER_TOKEN)).code is grpc.StatusCode.OK
    assert await health(stack) == health_pb2.HealthCheckResponse.SERVING


async def test_proxy_starts_without_enclave_and_connects_when_it_appears(tmp_path):
    async with static_stack(tmp_path, start_enclave=False) as stack:
        assert not stack.state.serving
        assert await health(stack) == health_pb2.HealthCheckResponse.NOT_SERVING
        result = await stack.sign(valid_cv(), token=TRADER_TOKEN)
        assert result.code is grpc.StatusCode.UNAVAILABLE and "enclave unreachable" in result.details
        await stack.start_enclave()
        await stack.wait_serving(True)
        assert (await stack.sign(valid_cv(), token=TRADER_TOKEN)).code is grpc.StatusCode.OK


async def test_tls12_client_fails_the_handshake_and_tls13_succeeds(stack):
    host, port = stack.target.split(":")

    def context(version: ssl.TLSVersion) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=stack.ca_pem.decode())
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_alpn_protocols(["h2"])
        return ctx

    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.open_connection(host, int(port), ssl=context(ssl.TLSVersion.TLSv1_2), server_hostname="localhost")
    _, writer = await asyncio.open_connection(host, int(port), ssl=context(ssl.TLSVersion.TLSv1_3),
                                              server_hostname="localhost")
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
    writer.close()


async def test_reflection_lists_the_signer_and_health_services(stack):
    stub = reflection_pb2_grpc.ServerReflectionStub(stack.channel())
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    async for response in responses:
        names = {s.name for s in response.list_services_response.service}
        break
    assert {"swqos.v1.Signer", "grpc.health.v1.Health"} <= names


async def test_deadline_is_enforced_with_a_slow_enclave(tmp_path):
    async with static_stack(tmp_path, enclave={"pipeline": {"signer": "slow_ed25519"},
                                               "swqos": {"plugins": ["payload_tls_cv", "testing"],
                                                         "allow_test_plugins": True},
                                               "layers": {"signer": {"slow_ed25519": {"delay_ms": 400}}}}) as stack:
        result = await stack.sign(valid_cv(), token=TRADER_TOKEN)
        assert result.code is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_back_pressure_refuses_at_once_when_the_enclave_queue_is_full(tmp_path):
    async with static_stack(tmp_path, proxy={"proxy": {"max_enclave_inflight": 1, "deadline_ms": 2000}},
                            enclave={"pipeline": {"signer": "slow_ed25519"},
                                     "swqos": {"plugins": ["payload_tls_cv", "testing"], "allow_test_plugins": True},
                                     "layers": {"signer": {"slow_ed25519": {"delay_ms": 200}}}}) as stack:
        results = await asyncio.gather(*(stack.sign(valid_cv(), token=TRADER_TOKEN) for _ in range(4)))
        codes = sorted(r.code.name for r in results)
        assert codes.count("OK") >= 1
        busy = [r for r in results if r.code is grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert busy, codes
        assert all(float(r.trailing["retry-after"]) > 0 for r in busy)
        assert all("enclave queue full" in r.details for r in busy)


class ExplodingAuthenticator:
    async def authenticate(self, head, client):
        raise RuntimeError("bug in a plugin")


class ExplodingPlugin:
    SWQOS_PLUGIN_NAME = "exploding"

    @hookimpl
    def swqos_register_authenticators(self, register):
        register("explode", lambda s, ctx: ExplodingAuthenticator())


async def test_an_unexpected_exception_in_a_stage_is_a_refusal(tmp_path):
    async with static_stack(tmp_path, proxy={"pipeline": {"auth": ["explode"]}, "layers": {"auth": {"static": None}}},
                            extra_plugins=[ExplodingPlugin()]) as stack:
        before = await stack.signatures_made()
        result = await refused(stack, grpc.StatusCode.UNAUTHENTICATED, before=before, payload=valid_cv(),
                               token=TRADER_TOKEN)
        assert "internal fault in auth" in result.details
        assert "bug in a plugin" not in result.details


async def test_a_bad_proxy_config_does_not_start(tmp_path):
    with pytest.raises(ConfigError, match="unknown implementation 'nope'"):
        async with static_stack(tmp_path, proxy={"pipeline": {"validate": ["nope"]}}):
            pass


async def test_tls12_self_probe_is_conclusive_with_client_certificates(tmp_path):
    """With [proxy] client_ca, the boot probe uses a twin listener without client auth, so a
    process whose gRPC TLS still accepted TLS 1.2 could not pass it by accident."""
    import os

    from swqos_core import TLS13_ONLY_CIPHER_SUITES
    from swqos_core.config import ProxySettings
    from swqos_core.server import tls12_refused
    from swqos_dev import devstack

    dev = devstack.prepare(tmp_path / "dev")
    settings = ProxySettings(tls_cert=dev.tls_cert, tls_key=dev.tls_key, enclave="unix:///x", client_ca=dev.ca)
    assert os.environ["GRPC_SSL_CIPHER_SUITES"] == TLS13_ONLY_CIPHER_SUITES
    assert await tls12_refused(settings, "127.0.0.1", 0) is True


PROBE_SCRIPT = """
import grpc  # imported before swqos_core: the TLS 1.3-only restriction never reaches grpc
import asyncio, pathlib, sys
from swqos_dev import devstack
from swqos_core.config import ProxySettings
from swqos_core.server import tls12_refused
dev = devstack.prepare(pathlib.Path(sys.argv[1]))
for client_ca in (None, dev.ca):
    settings = ProxySettings(tls_cert=dev.tls_cert, tls_key=dev.tls_key, enclave="unix:///x", client_ca=client_ca)
    async def probe():
        server = grpc.aio.server()
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(dev.tls_key.read_bytes(),
                                      dev.tls_cert.read_bytes())]))
        await server.start()
        try:
            return await tls12_refused(settings, "127.0.0.1", port)
        finally:
            await server.stop(None)
    print("client_ca" if client_ca else "plain", asyncio.run(probe()))
"""


def test_tls12_self_probe_catches_a_process_where_the_restriction_did_not_take(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GRPC_SSL_CIPHER_SUITES"}  # as a fresh process has it
    result = subprocess.run([sys.executable, "-c", PROBE_SCRIPT, str(tmp_path / "dev")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["plain", "False", "client_ca", "False"]


async def test_payload_larger_than_any_cv_is_refused_by_the_host_validator(stack):
    before = await stack.signatures_made()
    result = await refused(stack, grpc.StatusCode.INVALID_ARGUMENT, before=before, payload=b" " * 300,
                           token=TRADER_TOKEN)
    assert "more than 256" in result.details  # the host refused it; it never reached the enclave
