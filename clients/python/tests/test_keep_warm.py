"""``keep_warm``: an idle channel gets the standard health check, so it stays connected and warm."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures

import grpc
import pytest

from swqos_client import AsyncSignerClient, LocalRefusal, SignerClient, TlsTrust, make_client_certificate_verify
from swqos_proto import SERVICE, signer_pb2

CV = make_client_certificate_verify(bytes(32))


class Server:
    """A TLS gRPC server answering Sign with a fixed signature and counting health checks."""

    def __init__(self, tls_material) -> None:
        ca, cert, key = tls_material
        self.ca = ca
        self.health_checks = 0
        self.signs = 0
        self.lock = threading.Lock()

        def sign(req, context):
            with self.lock:
                self.signs += 1
            return signer_pb2.SignCertificateVerifyResponse(signature=b"\x01" * 64)

        def check(raw, context):
            with self.lock:
                self.health_checks += 1
            return b"\x08\x01"  # HealthCheckResponse(status=SERVING)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(SERVICE, {"SignCertificateVerify": grpc.unary_unary_rpc_method_handler(
                sign, request_deserializer=signer_pb2.SignCertificateVerifyRequest.FromString,
                response_serializer=signer_pb2.SignCertificateVerifyResponse.SerializeToString)}),
            grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
                "Check": grpc.unary_unary_rpc_method_handler(check)}),
        ))
        port = self.server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
        self.target = f"127.0.0.1:{port}"
        self.server.start()


@pytest.fixture
def server(tls_material):
    s = Server(tls_material)
    yield s
    s.server.stop(None)


def _wait_for(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_an_idle_channel_gets_health_checks_and_signs_nothing(server) -> None:
    client = SignerClient(server.target, token="t", trust=TlsTrust(ca_pem=server.ca, server_name="localhost"),
                          keep_warm=0.05)
    try:
        client.sign_certificate_verify(CV)
        assert _wait_for(lambda: client.warm_pings >= 3)
        assert server.health_checks >= 3 and server.signs == 1
    finally:
        client.close()
    assert not client._keeper.is_alive()  # close stops the thread
    after = server.health_checks
    time.sleep(0.2)
    assert server.health_checks == after


def test_without_keep_warm_nothing_is_sent(server) -> None:
    client = SignerClient(server.target, token="t", trust=TlsTrust(ca_pem=server.ca, server_name="localhost"))
    try:
        client.sign_certificate_verify(CV)
        time.sleep(0.3)
        assert server.health_checks == 0 and client.warm_pings == 0 and client._keeper is None
    finally:
        client.close()


def test_wait_ready_starts_keeping_warm(server) -> None:
    client = SignerClient(server.target, token="t", trust=TlsTrust(ca_pem=server.ca, server_name="localhost"),
                          keep_warm=0.05)
    try:
        client.wait_ready(5)
        assert _wait_for(lambda: server.health_checks >= 2)
        assert server.signs == 0
    finally:
        client.close()


async def test_async_client_keeps_warm_on_its_loop(server) -> None:
    client = AsyncSignerClient(server.target, token="t", trust=TlsTrust(ca_pem=server.ca, server_name="localhost"),
                               keep_warm=0.05)
    try:
        await client.sign_certificate_verify(CV)
        for _ in range(1000):
            if client.warm_pings >= 3:
                break
            await asyncio.sleep(0.01)
        assert client.warm_pings >= 3 and server.signs == 1
    finally:
        await client.close()
    assert client._keeper is not None and client._keeper.done()


@pytest.mark.parametrize("bad", [0.0, 0.001, -1.0, 61.0])
def test_keep_warm_out_of_range_is_refused(bad) -> None:
    with pytest.raises(LocalRefusal, match="keep_warm"):
        SignerClient("127.0.0.1:1", token="t", keep_warm=bad)
