"""Hook implementations of swqos-payload-tls-cv."""

from swqos_core import hookimpl
from swqos_payload_tls_cv.matcher import TlsCvMatcher, TlsCvSettings
from swqos_payload_tls_cv.validator import TlsCvValidator


@hookimpl
def swqos_register_payload_matchers(register):
    register("tls_cv", lambda settings, ctx: TlsCvMatcher(settings), TlsCvSettings,
             description="TLS 1.3 client CertificateVerify only (130 or 146 bytes)")


@hookimpl
def swqos_register_request_validators(register):
    register("tls_cv", lambda settings, ctx: TlsCvValidator(settings), TlsCvSettings,
             description="the enclave's CertificateVerify rule, checked at the host first (same settings)")


@hookimpl(optionalhook=True)  # a swqos-dev hook: absent where swqos-dev is not installed
def swqos_dev_defaults(dev_dir):
    from swqos_payload_tls_cv.dev import dev_defaults  # imports swqos_dev, which is the only caller

    return dev_defaults(dev_dir)
