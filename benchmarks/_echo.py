"""Scenario (a): a bare grpcio aio server on the same TLS 1.3 setup, answering SignCertificateVerify
with a fixed 64-byte "signature" and doing nothing else. Run: python -m benchmarks._echo TLS_CRT TLS_KEY PORTFILE"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path

import grpc

from swqos_proto import SERVICE, signer_pb2

SIGNATURE = b"\x5a" * 64


async def sign(request: signer_pb2.SignCertificateVerifyRequest, context) -> signer_pb2.SignCertificateVerifyResponse:
    return signer_pb2.SignCertificateVerifyResponse(signature=SIGNATURE)


async def main(crt: str, key: str, portfile: str) -> None:
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 256)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "SignCertificateVerify": grpc.unary_unary_rpc_method_handler(
            sign,
            request_deserializer=signer_pb2.SignCertificateVerifyRequest.FromString,
            response_serializer=signer_pb2.SignCertificateVerifyResponse.SerializeToString,
        ),
    }),))
    creds = grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(crt).read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    Path(f"{portfile}.tid").write_text(str(threading.get_native_id()))
    Path(portfile).write_text(str(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(None)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
