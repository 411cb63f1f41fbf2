"""Request validator ``tls_cv``: the enclave's CertificateVerify rule, run first at the host.

A trader's malformed payload is then refused by the host-proxy (stage ``validate``, label
``payload_refused``) and never crosses the vsock, so the enclave's own refusal
(``refusals{stage="enclave",label="payload_refused"}``) keeps one meaning: the host let through
something it should not have. The enclave's matcher stays the judge; this is only its copy.
"""

from __future__ import annotations

from swqos_core.errors import Rejection, invalid_argument
from swqos_core.layers import Call
from swqos_payload_tls_cv.matcher import TlsCvMatcher, TlsCvSettings

#: The refusal label of this validator (the matcher's own label says what was wrong, in the reason).
LABEL = "payload_refused"


class TlsCvValidator:
    def __init__(self, settings: TlsCvSettings | None = None) -> None:
        self._matcher = TlsCvMatcher(settings)

    async def validate(self, call: Call) -> None:
        if call.head.rpc != "SignCertificateVerify":
            return
        try:
            self._matcher.match(call.payload)
        except Rejection as exc:
            raise invalid_argument(exc.reason, label=LABEL) from None
