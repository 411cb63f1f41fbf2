"""A real stack for integration tests: the enclave as a child process on a Unix socket, the
host-proxy in the test's event loop, real gRPC over real TLS 1.3 between test and proxy."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from swqos_core import config
from swqos_core.enclave.child import start_enclave_process, wait_for_socket
from swqos_core.enclave.client import query_identity
from swqos_core.identity import from_base58
from swqos_core.server import ProxyServer, start_proxy
from swqos_dev import devstack
from swqos_proto import IDENTITY_METHOD, SIGN_METHOD, signer_pb2
from swqos_testing.configs import merge

DEFAULT = object()


@dataclass
class CallResult:
    code: grpc.StatusCode
    details: str
    response: Any
    trailing: dict[str, str]


class Stack:
    def __init__(self, dev: devstack.DevDir, enclave_config: Path) -> None:
        self.dev = dev
        self.dev_dir = dev.root
        self.enclave_config = enclave_config
        self.identity_key = from_base58(dev.identity_b58())
        self.ca_pem = dev.ca.read_bytes()
        self.proxy: ProxyServer | None = None
        self.enclave_process: subprocess.Popen[bytes] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._default_token: str | None = None

    @property
    def target(self) -> str:
        assert self.proxy is not None
        return f"127.0.0.1:{self.proxy.port}"

    @property
    def state(self):
        assert self.proxy is not None
        return self.proxy.state

    def token(self, sub: str = "trader-1", *, ttl: int = 300, **claims: Any) -> str:
        return devstack.mint_dev_token(self.dev, sub, ttl=ttl, **claims)

    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            creds = grpc.ssl_channel_credentials(root_certificates=self.ca_pem)
            self._channel = grpc.aio.secure_channel(
                self.target, creds, options=[("grpc.ssl_target_name_override", "localhost")]
            )
        return self._channel

    async def _unary(self, method: str, request: Any, response_type: Any, token: Any,
                     metadata: Sequence[tuple[str, str]], timeout: float) -> CallResult:
        if token is DEFAULT:
            token = self._default_token = self._default_token or self.token()
        md = list(metadata)
        if token is not None:
            md.append(("authorization", f"Bearer {token}"))
        raw = request if isinstance(request, bytes) else request.SerializeToString()
        call = self.channel().unary_unary(method, request_serializer=None,
                                          response_deserializer=response_type.FromString)(
            raw, metadata=md, timeout=timeout)
        try:
            response = await call
        except grpc.aio.AioRpcError as exc:
            trailing = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
            return CallResult(exc.code(), exc.details() or "", None, trailing)
        trailing = {k: v for k, v in (await call.trailing_metadata() or ()) if isinstance(v, str)}
        return CallResult(grpc.StatusCode.OK, "", response, trailing)

    async def sign(self, payload: bytes | None = None, *, token: Any = DEFAULT,
                   metadata: Sequence[tuple[str, str]] = (), raw: bytes | None = None,
                   timeout: float = 5.0) -> CallResult:
        """Call SignCertificateVerify. ``raw`` sends exact body bytes instead of a message."""
        request = raw if raw is not None else signer_pb2.SignCertificateVerifyRequest(payload=payload or b"")
        return await self._unary(SIGN_METHOD, request, signer_pb2.SignCertificateVerifyResponse,
                                 token, metadata, timeout)

    async def identity(self, nonce: bytes = b"", *, token: Any = DEFAULT,
                       metadata: Sequence[tuple[str, str]] = (), timeout: float = 5.0) -> CallResult:
        return await self._unary(IDENTITY_METHOD, signer_pb2.GetIdentityRequest(nonce=nonce),
                                 signer_pb2.GetIdentityResponse, token, metadata, timeout)

    async def signatures_made(self) -> int:
        """The enclave's own count of signatures, asked on a separate connection."""
        return (await query_identity(f"unix://{self.dev.socket}")).signatures

    async def start_enclave(self) -> None:
        self.enclave_process = start_enclave_process(self.enclave_config, self.dev_dir / "enclave.log")
        await wait_for_socket(self.dev.socket, self.enclave_process)

    async def kill_enclave(self) -> None:
        if self.enclave_process is not None:
            self.enclave_process.kill()
            await asyncio.to_thread(self.enclave_process.wait)
            self.enclave_process = None
        with contextlib.suppress(FileNotFoundError):
            self.dev.socket.unlink()

    async def wait_serving(self, serving: bool = True, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.state.serving != serving:
            if loop.time() > deadline:
                raise TimeoutError(f"proxy did not become {'' if serving else 'not '}serving: "
                                   f"{self.state.not_serving_reason()}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self.proxy is not None:
            await self.proxy.stop(None)
        await self.kill_enclave()


@contextlib.asynccontextmanager
async def running_stack(
    tmp_path: Path,
    *,
    proxy: dict[str, Any] | None = None,
    enclave: dict[str, Any] | None = None,
    extra_plugins: Sequence[Any] = (),
    start_enclave: bool = True,
    wait_serving: bool = True,
) -> AsyncIterator[Stack]:
    """A dev stack in ``tmp_path/dev`` with config overrides, torn down on exit.

    The dev stack's plugins' defaults (JWT auth with the dev issuer, the TLS CertificateVerify
    matcher) without the rate limiter: a test that wants one adds its own ``[layers.rate_limit]``.
    ``proxy`` and ``enclave`` are deep-merged into the generated configs (``None`` deletes a key).
    """
    dev = devstack.prepare(tmp_path / "dev")
    proxy_data = merge(devstack.proxy_config(dev, "127.0.0.1:0", without=["ratelimit"]), proxy or {})
    proxy_data["proxy"].setdefault("enclave_ping_interval", 0.2)
    enclave_data = merge(devstack.enclave_config(dev), enclave or {})
    devstack.write_toml(dev.config, proxy_data)
    devstack.write_toml(dev.enclave_config, enclave_data)
    stack = Stack(dev, dev.enclave_config)
    try:
        if start_enclave:
            await stack.start_enclave()
        stack.proxy = await start_proxy(config.load(dev.config, process="proxy"), extra_plugins=tuple(extra_plugins))
        if start_enclave and wait_serving:
            await stack.wait_serving()
        yield stack
    finally:
        await stack.close()
