"""Pinning the identity as base58 or bytes, and the first call on a cold channel."""

from __future__ import annotations

import threading
import time

import base58
import pytest

from swqos_client import (
    AsyncSignerClient,
    BadResponse,
    LocalRefusal,
    ProxyUnreachable,
    RemoteEd25519PrivateKey,
    RetryPolicy,
    SignerClient,
    TlsTrust,
    make_client_certificate_verify,
)
from swqos_client.remote_key import as_public_key

CV = make_client_certificate_verify(bytes(32))


def _client(target: str, ca: bytes, **kw) -> SignerClient:
    return SignerClient(target, token="t", trust=TlsTrust(ca_pem=ca), **kw)


@pytest.mark.parametrize("form", ["base58", "base58 with newline", "bytes", "bytearray", "key"])
def test_public_key_accepted_as_base58_bytes_or_key(fake_signer, form) -> None:
    raw = fake_signer.public_key
    value = {
        "base58": fake_signer.public_key_base58,
        "base58 with newline": fake_signer.public_key_base58 + "\n",  # as read from identity.pub
        "bytes": raw,
        "bytearray": bytearray(raw),
        "key": fake_signer.key.public_key(),
    }[form]
    with _client(fake_signer.target, fake_signer.ca_pem) as c:
        key = RemoteEd25519PrivateKey(c, public_key=value)
        assert key.public_key_bytes() == raw
        assert key.check_identity() == raw
        key.public_key().verify(key.sign(CV), CV)
    assert [s.method for s in fake_signer.seen] == ["identity", "sign"]  # pinned: no identity fetch first


@pytest.mark.parametrize(("value", "message"), [
    ("notbase58!!", "is not base58"),
    (base58.b58encode(bytes(31)).decode(), "decodes to 31 bytes"),
    (bytes(33), "is 33 bytes"),
    (12345, "not int"),
])
def test_bad_public_key_is_refused_before_any_call(fake_signer, value, message) -> None:
    with _client(fake_signer.target, fake_signer.ca_pem) as c, pytest.raises(LocalRefusal, match=message):
        RemoteEd25519PrivateKey(c, public_key=value)
    assert fake_signer.seen == []


def test_pinned_base58_identity_refuses_another_proxy_key(fake_signer) -> None:
    other = base58.b58encode(bytes(range(1, 33))).decode()
    with _client(fake_signer.target, fake_signer.ca_pem) as c:
        with pytest.raises(BadResponse, match="different validator identity"):
            RemoteEd25519PrivateKey(c, public_key=other).check_identity()


def test_as_public_key_round_trips() -> None:
    raw = bytes(range(32))
    assert as_public_key(base58.b58encode(raw).decode()).public_bytes_raw() == raw


# --- cold channel --------------------------------------------------------------------------


def _start_later(late_signer, port: int, delay: float) -> threading.Thread:
    started = threading.Event()

    def run() -> None:
        time.sleep(delay)
        late_signer(port)
        started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_first_call_waits_for_a_proxy_that_is_still_starting(late_signer, closed_port, tls_material) -> None:
    """The proxy starts listening after the first call began: the call is served, within its timeout."""
    target = f"127.0.0.1:{closed_port}"
    with _client(target, tls_material[0], timeout=1.0, retry=RetryPolicy(max_attempts=2)) as c:
        thread = _start_later(late_signer, closed_port, 1.2)  # later than the call's own timeout
        identity = c.get_identity()
        thread.join()
    assert len(identity.public_key) == 32


def test_without_the_connect_wait_the_same_first_call_fails(late_signer, closed_port, tls_material) -> None:
    """The control: ``connect_timeout=None`` gives the first call only its own timeout."""
    target = f"127.0.0.1:{closed_port}"
    with _client(target, tls_material[0], timeout=0.3, connect_timeout=None,
                 retry=RetryPolicy(max_attempts=2)) as c:
        thread = _start_later(late_signer, closed_port, 1.2)
        with pytest.raises(ProxyUnreachable) as info:
            c.get_identity()
        thread.join()
    assert target in str(info.value)


def test_wait_ready_warms_up_and_reports_an_unreachable_proxy(fake_signer, closed_port, tls_material) -> None:
    with _client(fake_signer.target, fake_signer.ca_pem) as c:
        c.wait_ready()
        assert fake_signer.seen == []  # connecting is not a call
        assert len(c.sign_certificate_verify(CV)) == 64
    target = f"127.0.0.1:{closed_port}"
    with _client(target, tls_material[0]) as c, pytest.raises(ProxyUnreachable) as info:
        c.wait_ready(0.3)
    assert target in info.value.reason and "0.300 s" in info.value.reason


def test_an_unreachable_proxy_is_waited_for_once(closed_port, tls_material) -> None:
    """After one connect wait, later calls report the transport's reason at once."""
    target = f"127.0.0.1:{closed_port}"
    with _client(target, tls_material[0], timeout=0.3, connect_timeout=0.3,
                 retry=RetryPolicy(max_attempts=2, initial_backoff=0.01)) as c:
        for _ in range(2):
            with pytest.raises(ProxyUnreachable) as info:
                c.get_identity()
            assert target in info.value.reason
        assert c._warm


def test_connect_timeout_must_be_positive(tls_material) -> None:
    with pytest.raises(LocalRefusal, match="connect_timeout"):
        SignerClient("127.0.0.1:1", token="t", connect_timeout=0)


async def test_async_first_call_waits_for_a_proxy_that_is_still_starting(late_signer, closed_port, tls_material) -> None:
    target = f"127.0.0.1:{closed_port}"
    async with AsyncSignerClient(target, token="t", trust=TlsTrust(ca_pem=tls_material[0]), timeout=1.0,
                                 retry=RetryPolicy(max_attempts=2)) as c:
        thread = _start_later(late_signer, closed_port, 1.2)
        identity = await c.get_identity()
        thread.join()
    assert len(identity.public_key) == 32


async def test_async_wait_ready_reports_an_unreachable_proxy(closed_port, tls_material) -> None:
    target = f"127.0.0.1:{closed_port}"
    async with AsyncSignerClient(target, token="t", trust=TlsTrust(ca_pem=tls_material[0])) as c:
        with pytest.raises(ProxyUnreachable, match=target):
            await c.wait_ready(0.3)
