"""Host-side request checks that need the decoded body.

The body-size cap is enforced earlier, by the server, before anything is decoded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc

from swqos_core.errors import Rejection, invalid_argument
from swqos_core.layers import Call


@dataclass
class LimitsSettings:
    #: Largest payload forwarded to the enclave. A CertificateVerify is 130 or 146 bytes; the
    #: enclave's matcher is the judge, this only keeps obvious junk off the vsock.
    max_payload_bytes: int = 256


class LimitsValidator:
    def __init__(self, settings: LimitsSettings) -> None:
        self.max_payload_bytes = settings.max_payload_bytes

    async def validate(self, call: Call) -> None:
        if call.head.rpc == "SignCertificateVerify":
            if not call.payload:
                raise invalid_argument("payload is missing", label="payload_missing")
            if len(call.payload) > self.max_payload_bytes:
                raise invalid_argument(f"payload is {len(call.payload)} bytes, more than {self.max_payload_bytes}",
                                       label="payload_too_large")
        if time.monotonic() >= call.deadline:
            raise Rejection(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before signing", label="deadline")
