"""Exception mapping, retry policy and deadlines against a real in-process gRPC server over TLS."""

from __future__ import annotations

import random
import time

import grpc
import pytest

from swqos_client import (
    AsyncSignerClient,
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    ProxyUnreachable,
    ResourceExhausted,
    RetryPolicy,
    SignerClient,
    TlsTrust,
    Unauthenticated,
    Unavailable,
    UnexpectedStatus,
    make_client_certificate_verify,
)
from swqos_client.errors import error_from_status, parse_retry_after

CV = make_client_certificate_verify(bytes(32))
FAST = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.002)


def _sync(fake, **kw) -> SignerClient:
    kw.setdefault("retry", FAST)
    return SignerClient(fake.target, token="tok-1", trust=TlsTrust(ca_pem=fake.ca_pem), **kw)


def _async(fake, **kw) -> AsyncSignerClient:
    kw.setdefault("retry", FAST)
    return AsyncSignerClient(fake.target, token="tok-1", trust=TlsTrust(ca_pem=fake.ca_pem), **kw)


NOT_RETRIED = [
    (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument, "payload is not a client CertificateVerify"),
    (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated, "token expired"),
    (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied, "probe tokens cannot sign"),
    (grpc.StatusCode.INTERNAL, UnexpectedStatus, "boom"),
]


@pytest.mark.parametrize(("code", "exc", "reason"), NOT_RETRIED)
def test_sync_typed_exception_and_no_retry(fake_signer, step, code, exc, reason) -> None:
    fake_signer.script = [step(code, reason)]
    with _sync(fake_signer) as c, pytest.raises(exc) as info:
        c.sign_certificate_verify(CV)
    assert info.value.reason == reason
    assert info.value.code == code
    assert info.value.attempts == 1
    assert len(fake_signer.seen) == 1
    assert fake_signer.signatures == 0


@pytest.mark.parametrize(("code", "exc", "reason"), NOT_RETRIED)
async def test_async_typed_exception_and_no_retry(fake_signer, step, code, exc, reason) -> None:
    fake_signer.script = [step(code, reason)]
    async with _async(fake_signer) as c:
        with pytest.raises(exc) as info:
            await c.sign_certificate_verify(CV)
    assert info.value.reason == reason
    assert len(fake_signer.seen) == 1
    assert fake_signer.signatures == 0


def test_sync_retries_unavailable_then_succeeds(fake_signer, step) -> None:
    fake_signer.script = [step(grpc.StatusCode.UNAVAILABLE, "enclave unreachable")] * 2
    with _sync(fake_signer) as c:
        sig = c.sign_certificate_verify(CV)
    fake_signer.key.public_key().verify(sig, CV)
    assert len(fake_signer.seen) == 3
    assert fake_signer.signatures == 1


async def test_async_retries_resource_exhausted_honouring_retry_after(fake_signer, step) -> None:
    fake_signer.script = [step(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limited", retry_after="0.200")]
    async with _async(fake_signer, timeout=2.0) as c:
        sig = await c.sign_certificate_verify(CV)
    assert len(sig) == 64
    first, second = fake_signer.seen
    # the client waited at least the server's hint before the second attempt
    assert second.at - first.at >= 0.2


def test_retry_after_longer_than_deadline_is_not_waited(fake_signer, step) -> None:
    fake_signer.script = [step(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limited", retry_after="3.000")]
    with _sync(fake_signer, timeout=0.5) as c, pytest.raises(ResourceExhausted) as info:
        c.sign_certificate_verify(CV)
    assert info.value.retry_after == 3.0
    assert info.value.reason == "rate limited"
    assert len(fake_signer.seen) == 1


def test_gives_up_after_max_attempts(fake_signer, step) -> None:
    fake_signer.script = [step(grpc.StatusCode.UNAVAILABLE, "halted: operator")] * 10
    with _sync(fake_signer, retry=RetryPolicy(max_attempts=3, initial_backoff=0.001)) as c:
        with pytest.raises(Unavailable) as info:
            c.sign_certificate_verify(CV)
    assert not isinstance(info.value, ProxyUnreachable)
    assert info.value.reason == "halted: operator"
    assert info.value.attempts == 3
    assert len(fake_signer.seen) == 3
    assert fake_signer.signatures == 0


def test_slow_server_hits_deadline(fake_signer, step) -> None:
    fake_signer.script = [step(delay=0.6)]
    with _sync(fake_signer, timeout=0.2) as c, pytest.raises(DeadlineExceeded) as info:
        c.sign_certificate_verify(CV)
    assert fake_signer.target in info.value.reason


def test_token_travels_as_bearer_and_caller_cannot_override(fake_signer, step) -> None:
    with _sync(fake_signer) as c:
        c.sign_certificate_verify(CV, metadata=[("authorization", "Bearer evil"), ("x-trace", "1")])
    md = fake_signer.seen[0].metadata
    assert md["authorization"] == "Bearer tok-1"
    assert md["x-trace"] == "1"


def test_server_name_override(fake_signer, step) -> None:
    port = fake_signer.target.rsplit(":", 1)[1]
    c = SignerClient(
        f"localhost:{port}", token="t", trust=TlsTrust(ca_pem=fake_signer.ca_pem, server_name="signer.test")
    )
    with c:
        assert c.get_identity().public_key == fake_signer.public_key


def test_untrusted_server_certificate_is_a_clear_error(fake_signer, step, other_ca) -> None:
    start = time.monotonic()
    with SignerClient(fake_signer.target, token="t", trust=TlsTrust(ca_pem=other_ca), timeout=1.0, retry=FAST,
                      connect_timeout=0.5) as c:
        with pytest.raises(Unavailable):
            c.sign_certificate_verify(CV)
    assert time.monotonic() - start < 5  # bounded by connect wait + deadline (generous margin; not a speed test)
    assert fake_signer.seen == []


def test_unreachable_proxy_clear_error_within_deadline(closed_port) -> None:
    """Without the first call's connect wait, the call's deadline bounds everything."""
    target = f"127.0.0.1:{closed_port}"
    start = time.monotonic()
    with SignerClient(target, token="t", timeout=0.5, retry=RetryPolicy(initial_backoff=0.01),
                      connect_timeout=None) as c:
        with pytest.raises((ProxyUnreachable, DeadlineExceeded)) as info:
            c.sign_certificate_verify(CV)
    elapsed = time.monotonic() - start
    assert target in str(info.value)
    assert elapsed < 0.5 + 0.5  # the deadline bounds the call; slack for scheduling only


async def test_async_unreachable_proxy(closed_port) -> None:
    target = f"127.0.0.1:{closed_port}"
    async with AsyncSignerClient(target, token="t", timeout=0.5, connect_timeout=0.5) as c:
        with pytest.raises((ProxyUnreachable, DeadlineExceeded)) as info:
            await c.get_identity()
    assert target in str(info.value)


# ---- pure policy / mapping ------------------------------------------------------------------


def test_policy_never_retries_non_retryable() -> None:
    p = RetryPolicy()
    for code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
    ):
        assert p.next_delay(code, 1, None, 10.0) is None


def test_policy_backoff_grows_with_jitter_and_cap() -> None:
    p = RetryPolicy(max_attempts=10, initial_backoff=0.1, multiplier=2, max_backoff=0.5, jitter=0.5)
    rng = random.Random(1)
    for n, base in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (8, 0.5)]:
        for _ in range(50):
            d = p.backoff(n, rng)
            assert base * 0.5 <= d <= base
    # two clients do not wait the same time
    assert len({round(p.backoff(3, rng), 9) for _ in range(20)}) > 1


def test_policy_retry_after_is_a_floor_and_deadline_a_ceiling() -> None:
    p = RetryPolicy(max_attempts=5, initial_backoff=0.01)
    d = p.next_delay(grpc.StatusCode.RESOURCE_EXHAUSTED, 1, 0.3, 10.0)
    assert d is not None and 0.3 <= d <= 0.33
    assert p.next_delay(grpc.StatusCode.RESOURCE_EXHAUSTED, 1, 0.3, 0.2) is None
    assert p.next_delay(grpc.StatusCode.RESOURCE_EXHAUSTED, 1, 99.0, 1000.0) is None  # beyond max_retry_after
    assert p.next_delay(grpc.StatusCode.UNAVAILABLE, 5, None, 10.0) is None  # attempts exhausted


@pytest.mark.parametrize(
    ("raw", "expected"),
    [([("retry-after", "7.500")], 7.5), ([("Retry-After", b"1")], 1.0), ([("retry-after", "-1")], None),
     ([("retry-after", "nan")], None), ([("retry-after", "soon")], None), ([], None), (None, None)],
)
def test_parse_retry_after(raw, expected) -> None:
    assert parse_retry_after(raw) == expected


def test_transport_failure_becomes_proxy_unreachable() -> None:
    e = error_from_status(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", target="h:1")
    assert isinstance(e, ProxyUnreachable) and "h:1" in e.reason
    e = error_from_status(grpc.StatusCode.UNAVAILABLE, "service halted")
    assert type(e) is Unavailable and e.reason == "service halted"
