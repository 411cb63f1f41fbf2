from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SignCertificateVerifyRequest(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class SignCertificateVerifyResponse(_message.Message):
    __slots__ = ("signature",)
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    def __init__(self, signature: _Optional[bytes] = ...) -> None: ...

class GetIdentityRequest(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    def __init__(self, nonce: _Optional[bytes] = ...) -> None: ...

class GetIdentityResponse(_message.Message):
    __slots__ = ("public_key", "attestation_document")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    attestation_document: bytes
    def __init__(self, public_key: _Optional[bytes] = ..., attestation_document: _Optional[bytes] = ...) -> None: ...
