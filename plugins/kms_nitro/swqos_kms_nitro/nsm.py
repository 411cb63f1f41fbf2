"""Talking to the Nitro Secure Module (NSM): the ``/dev/nsm`` ioctl and its CBOR messages.

The NSM driver takes one ioctl, ``_IOWR(0x0A, 0, struct nsm_message)`` = ``0xC0200A00``, where
``nsm_message`` is two ``struct iovec``: the CBOR request, and a caller buffer the driver fills with
the CBOR response (setting its length). Messages are serde_cbor's externally tagged enums:
``{"Attestation": {...}}`` or the bare text ``"GetRandom"``; answers are ``{"Attestation":
{"document": ...}}`` or ``{"Error": "<code>"}``.

Everything above the transport is shared with the fake NSM (:mod:`swqos_kms_nitro.fake_nsm`),
which implements the same :class:`NsmTransport` protocol, so the client code the tests run is the
code the enclave runs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cbor2

NSM_IOCTL_REQUEST = 0xC0200A00
#: The driver refuses larger requests with EMSGSIZE (nsm-api ``NSM_REQUEST_MAX_SIZE``).
NSM_REQUEST_MAX = 0x1000
#: Response buffer handed to the driver (nsm-api ``NSM_RESPONSE_MAX_SIZE``).
NSM_RESPONSE_MAX = 0x3000
#: public_key is 1..1024 bytes; user_data and nonce are documented as both 1024 and 512, keep 512.
MAX_PUBLIC_KEY = 1024
MAX_USER_DATA = 512
MAX_NONCE = 512

#: NSM ErrorCode values and what they mean for an operator.
ERROR_MEANINGS: dict[str, str] = {
    "InvalidArgument": "the NSM rejected an argument (size or format)",
    "InvalidIndex": "PCR index out of range",
    "InvalidResponse": "the NSM produced an answer that could not be understood",
    "ReadOnlyIndex": "that PCR is locked and cannot be extended",
    "InvalidOperation": "the NSM does not support this operation",
    "BufferTooSmall": "the response did not fit the buffer",
    "InputTooLarge": "the request is larger than the NSM accepts (4096 bytes)",
    "InternalError": "the NSM reported an internal error",
}


class NsmError(Exception):
    """The NSM refused a request, or could not be reached. ``code`` is the NSM ErrorCode name."""

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        meaning = ERROR_MEANINGS.get(code, "NSM error")
        super().__init__(f"NSM {code}: {meaning}" + (f" ({detail})" if detail else ""))


@runtime_checkable
class NsmTransport(Protocol):
    """One request/response exchange with an NSM: CBOR bytes in, CBOR bytes out."""

    def request(self, data: bytes) -> bytes: ...


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _NsmMessage(ctypes.Structure):
    _fields_ = [("request", _IoVec), ("response", _IoVec)]


assert ctypes.sizeof(_NsmMessage) == 32 or ctypes.sizeof(ctypes.c_void_p) != 8  # the ioctl code encodes 32


class DeviceTransport:
    """The real ``/dev/nsm``. Exists only inside a Nitro Enclave."""

    def __init__(self, path: str | Path = "/dev/nsm") -> None:
        self.path = str(path)
        self._fd: int | None = None
        # The driver is fine with concurrent callers, but one buffer pair per call keeps this simple.
        self._lock = threading.Lock()

    def open(self) -> None:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            except OSError as exc:
                raise NsmError("Unavailable", f"cannot open {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def request(self, data: bytes) -> bytes:
        import fcntl  # Unix only; imported here so the module loads anywhere for the tests

        if len(data) > NSM_REQUEST_MAX:
            raise NsmError("InputTooLarge", f"{len(data)} bytes")
        self.open()
        req = ctypes.create_string_buffer(data, len(data))
        resp = ctypes.create_string_buffer(NSM_RESPONSE_MAX)
        msg = _NsmMessage(
            _IoVec(ctypes.cast(req, ctypes.c_void_p), len(data)),
            _IoVec(ctypes.cast(resp, ctypes.c_void_p), NSM_RESPONSE_MAX),
        )
        with self._lock:
            try:
                # mutate_flag=True: the driver writes the response length back into msg.response.
                fcntl.ioctl(self._fd, NSM_IOCTL_REQUEST, msg, True)  # type: ignore[arg-type]
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    raise NsmError("InputTooLarge") from None
                raise NsmError("InternalError", f"ioctl failed: {exc.strerror}") from None
        n = msg.response.iov_len
        if not 0 < n <= NSM_RESPONSE_MAX:
            raise NsmError("InvalidResponse", f"response length {n}")
        return resp.raw[:n]


@dataclass(frozen=True, slots=True)
class PcrValue:
    index: int
    locked: bool
    data: bytes


def _check_optional(name: str, value: bytes | None, low: int, high: int) -> None:
    if value is None:
        return
    if not isinstance(value, bytes | bytearray):
        raise NsmError("InvalidArgument", f"{name} must be bytes")
    if not low <= len(value) <= high:
        raise NsmError("InvalidArgument", f"{name} is {len(value)} bytes, allowed {low}..{high}")


class NsmClient:
    """The NSM requests swqos uses, with the documented size limits checked before sending."""

    def __init__(self, transport: NsmTransport) -> None:
        self.transport = transport

    def _call(self, request: Any, answer: str) -> dict[str, Any]:
        data = cbor2.dumps(request)
        if len(data) > NSM_REQUEST_MAX:
            raise NsmError("InputTooLarge", f"{len(data)} bytes")
        raw = self.transport.request(data)
        try:
            response = cbor2.loads(raw)
        except Exception:  # any decoding trouble is the same answer: we did not understand it
            raise NsmError("InvalidResponse", "not CBOR") from None
        if isinstance(response, dict) and len(response) == 1:
            ((key, body),) = response.items()
            if key == "Error":
                raise NsmError(str(body) if isinstance(body, str) else "InvalidResponse")
            if key == answer and isinstance(body, dict):
                return body
        raise NsmError("InvalidResponse", f"expected a {answer} answer")

    def attestation(
        self, *, public_key: bytes | None = None, user_data: bytes | None = None, nonce: bytes | None = None
    ) -> bytes:
        """Return a signed attestation document (COSE_Sign1 bytes) carrying the given fields."""
        _check_optional("public_key", public_key, 1, MAX_PUBLIC_KEY)
        _check_optional("user_data", user_data, 0, MAX_USER_DATA)
        _check_optional("nonce", nonce, 0, MAX_NONCE)
        body = self._call(
            {"Attestation": {
                "user_data": None if user_data is None else bytes(user_data),
                "nonce": None if nonce is None else bytes(nonce),
                "public_key": None if public_key is None else bytes(public_key),
            }},
            "Attestation",
        )
        document = body.get("document")
        if not isinstance(document, bytes) or not document:
            raise NsmError("InvalidResponse", "attestation answer without a document")
        return document

    def get_random(self) -> bytes:
        body = self._call("GetRandom", "GetRandom")
        random = body.get("random")
        if not isinstance(random, bytes) or not random:
            raise NsmError("InvalidResponse", "GetRandom answer without bytes")
        return random

    def describe_pcr(self, index: int) -> PcrValue:
        if not 0 <= index < 32:
            raise NsmError("InvalidIndex", f"PCR{index}")
        body = self._call({"DescribePCR": {"index": index}}, "DescribePCR")
        lock, data = body.get("lock"), body.get("data")
        if not isinstance(lock, bool) or not isinstance(data, bytes) or len(data) not in (32, 48, 64):
            raise NsmError("InvalidResponse", "malformed DescribePCR answer")
        return PcrValue(index, lock, data)
