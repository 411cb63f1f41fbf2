"""payload_tls_cv's part of the development stack: the enclave signs TLS 1.3 client
CertificateVerify payloads only (``swqos_dev_defaults``; imported only by swqos-dev)."""

from __future__ import annotations

from swqos_dev.contribution import DevContribution
from swqos_dev.devstack import DevDir


def dev_defaults(dev_dir: DevDir) -> DevContribution:
    return DevContribution(enclave={"swqos": {"plugins": ["payload_tls_cv"]}, "pipeline": {"payload_match": "tls_cv"}})
