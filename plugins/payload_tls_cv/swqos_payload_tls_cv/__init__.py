"""Payload matcher ``tls_cv``: the enclave signs a TLS 1.3 CertificateVerify and nothing else."""

from swqos_payload_tls_cv.matcher import CLIENT_PREFIX, SERVER_PREFIX, TlsCvMatcher, TlsCvSettings

__all__ = ["CLIENT_PREFIX", "SERVER_PREFIX", "TlsCvMatcher", "TlsCvSettings"]
