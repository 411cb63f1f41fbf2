"""The host-side pre-check ``tls_cv``: the enclave's rule, refused at the host before the vsock.

The stack test goes through the real gRPC/TLS listener, the real pipeline and a real enclave
process; it counts the enclave's own signatures and reads the enclave's log to show that a
malformed payload never reached it.
"""

from __future__ import annotations

import grpc
import pytest

from swqos_core import hookimpl
from swqos_core.errors import Rejection
from swqos_core.layers import Call, RequestHead
from swqos_payload_tls_cv import CLIENT_PREFIX, SERVER_PREFIX, TlsCvSettings
from swqos_payload_tls_cv.validator import LABEL, TlsCvValidator
from swqos_testing.stack import running_stack


def call(payload: bytes, rpc: str = "SignCertificateVerify") -> Call:
    head = RequestHead(rpc=rpc, peer="ipv4:198.51.100.7:4000", metadata=())  # type: ignore[arg-type]
    return Call(head=head, payload=payload, deadline=float("inf"))


NEAR_MISSES = {
    "empty": b"",
    "short": CLIENT_PREFIX + b"\x01" * 31,
    "162 bytes": CLIENT_PREFIX + b"\x01" * 64,
    "no spaces": b"\x00" * 64 + CLIENT_PREFIX[64:] + b"\x01" * 32,
    "server context": SERVER_PREFIX + b"\x01" * 32,
    "wrong context": b" " * 64 + b"TLS 1.3, client CertificateVerifz\x00" + b"\x01" * 32,
    "a transaction": b"\x01" + b"\x02" * 129,
}


@pytest.mark.parametrize("hash_len", [32, 48])
async def test_accepts_a_client_certificate_verify(hash_len) -> None:
    await TlsCvValidator().validate(call(CLIENT_PREFIX + b"\xab" * hash_len))


@pytest.mark.parametrize("name", sorted(NEAR_MISSES))
async def test_refuses_what_the_enclave_would_refuse(name) -> None:
    with pytest.raises(Rejection) as info:
        await TlsCvValidator().validate(call(NEAR_MISSES[name]))
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.label == LABEL == "payload_refused"
    assert "CertificateVerify" in info.value.reason


async def test_follows_the_matcher_settings() -> None:
    with pytest.raises(Rejection):
        await TlsCvValidator(TlsCvSettings(only_130=True)).validate(call(CLIENT_PREFIX + b"\xab" * 48))
    await TlsCvValidator(TlsCvSettings(allow_server_context=True)).validate(call(SERVER_PREFIX + b"\xab" * 32))


async def test_get_identity_has_no_payload_to_check() -> None:
    await TlsCvValidator().validate(call(b"", rpc="GetIdentity"))


# --- through the real stack --------------------------------------------------------------------

TRADER = "trader-token-0123456789abcdef"


class Decisions:
    """A decision observer, registered the way any plugin registers one."""

    def __init__(self) -> None:
        self.seen: list = []

    @hookimpl
    def swqos_register_observers(self, app, register) -> None:
        register("test_decisions", self.seen.append)


def _proxy(validate: list[str]) -> dict:
    return {
        "swqos": {"plugins": ["testing", "payload_tls_cv"], "allow_test_plugins": True},
        "pipeline": {"auth": ["static"], "validate": validate},
        "layers": {"auth": {"jwt": None, "static": {"tokens": {TRADER: "alice"}}}},
    }


def _enclave_refusals(stack) -> int:
    log = stack.dev_dir / "enclave.log"
    return log.read_text().count("refused payload") if log.exists() else 0


async def test_malformed_payload_is_refused_at_the_host_and_never_reaches_the_enclave(tmp_path) -> None:
    decisions = Decisions()
    async with running_stack(tmp_path, proxy=_proxy(["limits", "tls_cv"]), extra_plugins=[decisions]) as stack:
        before = await stack.signatures_made()
        for name, payload in NEAR_MISSES.items():
            if not payload:
                continue  # an empty payload is the limits validator's (payload_missing)
            result = await stack.sign(payload, token=TRADER)
            assert result.code is grpc.StatusCode.INVALID_ARGUMENT, (name, result.code, result.details)
            assert "CertificateVerify" in result.details, (name, result.details)
        ok = await stack.sign(CLIENT_PREFIX + b"\xcd" * 32, token=TRADER)
        assert ok.code is grpc.StatusCode.OK, ok.details
        assert await stack.signatures_made() == before + 1  # only the valid one was signed
    assert _enclave_refusals(stack) == 0  # read after the enclave stopped: its log is complete
    refused = [d for d in decisions.seen if d.outcome != "OK"]
    assert len(refused) == len(NEAR_MISSES) - 1
    assert {(d.stage, d.label, d.outcome) for d in refused} == {("validate", LABEL, "INVALID_ARGUMENT")}


async def test_without_the_pre_check_the_enclave_is_the_one_refusing(tmp_path) -> None:
    """The control: the same payload without ``tls_cv`` at the host reaches the enclave, which refuses it."""
    decisions = Decisions()
    async with running_stack(tmp_path, proxy=_proxy(["limits"]), extra_plugins=[decisions]) as stack:
        before = await stack.signatures_made()
        result = await stack.sign(NEAR_MISSES["server context"], token=TRADER)
        assert result.code is grpc.StatusCode.INVALID_ARGUMENT
        assert await stack.signatures_made() == before
    assert _enclave_refusals(stack) == 1  # the log check of the test above can see a refusal
    assert [(d.stage, d.label) for d in decisions.seen] == [("enclave", "payload_refused")]
