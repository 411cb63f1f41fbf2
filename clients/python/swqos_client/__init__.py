"""Trader SDK for swqos: sign TLS 1.3 client CertificateVerify payloads with a validator identity
held in a remote enclave, and open QUIC connections to Solana leaders as that validator.

The QUIC helpers (``swqos_client.quic``, ``swqos_client.testing_tpu``) need the ``quic`` extra.
"""

from .certificate import CERTIFICATE_LENGTH, client_certificate, client_certificate_der
from .client import AsyncSignerClient, Identity, SignerClient, TlsTrust
from .errors import (
    BadResponse,
    DeadlineExceeded,
    InvalidArgument,
    LocalRefusal,
    PermissionDenied,
    ProxyUnreachable,
    ResourceExhausted,
    SwqosError,
    TokenError,
    Unauthenticated,
    Unavailable,
    UnexpectedStatus,
)
from .payload import CLIENT_CV_PREFIX, check_client_certificate_verify, make_client_certificate_verify
from .remote_key import PrivateKeyUnavailable, RemoteEd25519PrivateKey
from .retry import NO_RETRY, RetryPolicy
from .tokens import TokenSource, token_expiry

__all__ = [
    "CERTIFICATE_LENGTH",
    "CLIENT_CV_PREFIX",
    "NO_RETRY",
    "AsyncSignerClient",
    "BadResponse",
    "DeadlineExceeded",
    "Identity",
    "InvalidArgument",
    "LocalRefusal",
    "PermissionDenied",
    "PrivateKeyUnavailable",
    "ProxyUnreachable",
    "RemoteEd25519PrivateKey",
    "ResourceExhausted",
    "RetryPolicy",
    "SignerClient",
    "SwqosError",
    "TlsTrust",
    "TokenError",
    "TokenSource",
    "Unauthenticated",
    "Unavailable",
    "UnexpectedStatus",
    "check_client_certificate_verify",
    "client_certificate",
    "client_certificate_der",
    "make_client_certificate_verify",
    "token_expiry",
]
