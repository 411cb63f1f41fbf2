"""The host ↔ enclave wire protocol: small, length-prefixed, multiplexed frames.

Every frame is ``length:u32be`` followed by ``length`` bytes of body::

    body = type:u8 | request_id:u32be | trace_id:u64be | data

``request_id`` lets many requests share one connection (answers may come back out of
order); ``trace_id`` is the host-proxy's request id, so the proxy's and the enclave's log
lines for one call can be joined. The channel is cleartext by design: isolation comes from
the Nitro hypervisor (threat model TB6). Anything malformed closes the connection.

Requests (host → enclave):
    SIGN      data = payload
    IDENTITY  data = nonce (≤ 512 bytes, the NSM limit)
    PING      data = empty
Responses (enclave → host):
    SIGNATURE  data = 64-byte Ed25519 signature
    IDENTITY_RESULT data = public_key(32) | signatures:u64 | mlen:u16 | measurement(ascii) | document
    PONG       data = signatures:u64
    ERROR      data = code:u8 | reason (utf-8, ≤ 200 bytes)
"""

from __future__ import annotations

import asyncio
import enum
import struct
from typing import NamedTuple

from swqos_core.net import parse_listen

LENGTH = struct.Struct(">I")
HEADER = struct.Struct(">BIQ")
#: LENGTH then HEADER, packed in one call.
_PREFIX = struct.Struct(">IBIQ")
MAX_NONCE = 512
MAX_REASON = 200
#: The host accepts larger frames than the enclave: an attestation document can be ~16 KiB.
HOST_MAX_FRAME = 64 * 1024


class FrameType(enum.IntEnum):
    SIGN = 0x01
    IDENTITY = 0x02
    PING = 0x03
    SIGNATURE = 0x81
    IDENTITY_RESULT = 0x82
    PONG = 0x83
    ERROR = 0xFF


REQUESTS = frozenset({FrameType.SIGN, FrameType.IDENTITY, FrameType.PING})
RESPONSES = frozenset({FrameType.SIGNATURE, FrameType.IDENTITY_RESULT, FrameType.PONG, FrameType.ERROR})


class ErrorCode(enum.IntEnum):
    REFUSED = 1  # the payload matcher said no → INVALID_ARGUMENT
    BUSY = 2  # too many requests in flight → RESOURCE_EXHAUSTED
    FAULT = 3  # the enclave could not complete the request → UNAVAILABLE


class ProtocolError(Exception):
    """The peer broke the protocol; the connection must be closed."""


class Frame(NamedTuple):
    type: FrameType
    request_id: int
    trace_id: int
    data: bytes


def encode(ftype: FrameType, request_id: int, trace_id: int, data: bytes = b"") -> bytes:
    return _PREFIX.pack(HEADER.size + len(data), ftype, request_id, trace_id) + data


def encode_error(request_id: int, trace_id: int, code: ErrorCode, reason: str) -> bytes:
    raw = reason.encode("utf-8", "replace")[:MAX_REASON]
    return encode(FrameType.ERROR, request_id, trace_id, bytes([code]) + raw)


def decode_error(data: bytes) -> tuple[ErrorCode, str]:
    if not data:
        raise ProtocolError("empty error frame")
    try:
        code = ErrorCode(data[0])
    except ValueError:
        raise ProtocolError(f"unknown error code {data[0]}") from None
    return code, data[1 : 1 + MAX_REASON].decode("utf-8", "replace")


#: Byte -> FrameType: a dict lookup, where calling the enum costs microseconds per frame.
_FRAME_TYPES = {t.value: t for t in FrameType}


def parse_frame(body: bytes) -> Frame:
    """A frame's body (after its length prefix) → Frame. Raises ProtocolError."""
    raw_type, request_id, trace_id = HEADER.unpack_from(body)
    ftype = _FRAME_TYPES.get(raw_type)
    if ftype is None:
        raise ProtocolError(f"unknown frame type 0x{raw_type:02x}")
    return Frame(ftype, request_id, trace_id, body[HEADER.size :])


def check_length(length: int, max_frame: int) -> None:
    if length < HEADER.size or length > max_frame:
        raise ProtocolError(f"frame length {length} outside [{HEADER.size}, {max_frame}]")


async def read_frame(reader: asyncio.StreamReader, max_frame: int) -> Frame | None:
    """Read one frame from a stream; ``None`` on a clean EOF between frames. Raises ProtocolError."""
    try:
        prefix = await reader.readexactly(LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("truncated length prefix") from None
        return None
    (length,) = LENGTH.unpack(prefix)
    check_length(length, max_frame)
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("truncated frame") from None
    return parse_frame(body)


def encode_identity(public_key: bytes, signatures: int, measurement: str | None, document: bytes) -> bytes:
    m = (measurement or "").encode("ascii")
    return public_key + struct.pack(">QH", signatures, len(m)) + m + document


def decode_identity(data: bytes) -> tuple[bytes, int, str | None, bytes]:
    if len(data) < 42:
        raise ProtocolError("identity result too short")
    public_key = data[:32]
    signatures, mlen = struct.unpack_from(">QH", data, 32)
    if len(data) < 42 + mlen:
        raise ProtocolError("identity result truncated")
    measurement = data[42 : 42 + mlen].decode("ascii", "replace") or None
    return public_key, signatures, measurement, data[42 + mlen :]


def parse_address(address: str) -> tuple[str, str | tuple[int, int]]:
    """``unix:///path`` → ("unix", "/path"); ``vsock://CID:PORT`` → ("vsock", (cid, port))."""
    addr = parse_listen(address, where="enclave address", kinds=("unix", "vsock"))
    return ("unix", addr.path) if addr.kind == "unix" else ("vsock", (addr.cid, addr.port))
