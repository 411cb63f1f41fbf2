"""Layer doubles for pipeline tests: one object plays every host-proxy layer and the enclave, and
logs what it was asked to do, so a test observes the order stages ran instead of assuming it."""

from __future__ import annotations

import time

from swqos_core.layers import Call, ClientAddress, Principal, RequestHead
from swqos_core.pipeline import STAGES, Pipeline, Stage
from swqos_core.state import ServiceState


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def resolve(self, head):
        self.events.append("client_ip")
        return ClientAddress(None, "test", head.peer)

    async def check_address(self, head, client):
        self.events.append("address_limit")

    async def authenticate(self, head, client):
        self.events.append("auth")
        return Principal("alice", "trader", "test")

    async def check_principal(self, head, principal, client):
        self.events.append("subject_limit")

    async def validate(self, call):
        self.events.append("validate")

    async def sign(self, payload, trace_id):
        self.events.append("enclave")
        return b"s" * 64

    async def identity(self, nonce, trace_id=0):
        self.events.append("enclave_identity")
        return b"k" * 32, 0, None, b""


def make_pipeline(recorder: Recorder, stages: tuple[Stage, ...] = STAGES, max_request_bytes: int = 1024) -> Pipeline:
    state = ServiceState("test")
    state.set_enclave(True)
    return Pipeline(client_ip=(recorder,), rate_limit=(recorder,), auth=(recorder,), validate=(recorder,),  # type: ignore[arg-type]
                    enclave=recorder, state=state, stages=stages, max_request_bytes=max_request_bytes)  # type: ignore[arg-type]


def make_call(raw: bytes, rpc: str = "SignCertificateVerify") -> Call:
    head = RequestHead(rpc=rpc, peer="ipv4:127.0.0.1:1", metadata=(), request_id="ab")  # type: ignore[arg-type]
    return Call(head=head, payload=b"", deadline=time.monotonic() + 5, started=time.monotonic(), raw=raw)
