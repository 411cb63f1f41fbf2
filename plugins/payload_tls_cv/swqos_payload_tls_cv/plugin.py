"""Hook implementations of swqos-payload-tls-cv."""

from swqos_core import hookimpl
from swqos_payload_tls_cv.matcher import TlsCvMatcher, TlsCvSettings


@hookimpl
def swqos_register_payload_matchers(register):
    register("tls_cv", lambda settings, ctx: TlsCvMatcher(settings), TlsCvSettings,
             description="TLS 1.3 client CertificateVerify only (130 or 146 bytes)")
