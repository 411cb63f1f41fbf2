"""The swqos test kit as a pytest plugin (entry point ``pytest11``: ``swqos_testing``).

Loaded by pytest before any conftest or test module is imported. Importing :mod:`swqos_core` here
sets ``GRPC_SSL_CIPHER_SUITES`` before anything imports grpc, so a test module that imports grpc
first still gets a TLS 1.3-only gRPC (without it the proxy refuses to serve: "a TLS 1.2 handshake
succeeded"). Every fixture is documented in ``testing/README.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import swqos_core  # noqa: F401  (before grpc; the package __init__ does it too)
from swqos_testing.clock import FakeClock
from swqos_testing.configs import ConfigBuilder
from swqos_testing.layers import build_layer
from swqos_testing.stack import Stack, running_stack


@pytest_asyncio.fixture
async def swqos_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A running dev stack (enclave child process, host-proxy in the test's loop, JWT auth with
    the dev issuer, no rate limiter), torn down after the test."""
    async with running_stack(tmp_path) as stack:
        yield stack


@pytest_asyncio.fixture
async def swqos_stack_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await swqos_stack_factory(proxy=..., enclave=..., ...)``: start a stack with overrides
    (the arguments of :func:`swqos_testing.stack.running_stack`); each is torn down after the test.
    Stacks started in one test get their own directories (``tmp_path/stack-N``)."""
    async with contextlib.AsyncExitStack() as exits:
        count = 0

        async def start(**kwargs: Any) -> Stack:
            nonlocal count
            count += 1
            return await exits.enter_async_context(running_stack(tmp_path / f"stack-{count}", **kwargs))

        yield start


@pytest.fixture
def swqos_config(tmp_path: Path) -> Callable[..., ConfigBuilder]:
    """``swqos_config("proxy" | "enclave", data=None)``: a :class:`swqos_testing.configs.ConfigBuilder`
    writing into ``tmp_path``."""
    def make(process: str = "proxy", data: dict[str, Any] | None = None) -> ConfigBuilder:
        return ConfigBuilder(tmp_path, process, data)

    return make


@pytest.fixture
def swqos_layer(tmp_path: Path) -> Callable[..., Any]:
    """``swqos_layer(kind, name, settings, plugins_to_load=[...], ...)``: one layer built from
    settings exactly as startup builds it (:func:`swqos_testing.layers.build_layer`); relative
    paths in settings resolve against ``tmp_path``."""
    def build(kind: str, name: str, settings: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("config_dir", tmp_path)
        return build_layer(kind, name, settings, **kwargs)

    return build


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`swqos_testing.clock.FakeClock` at its default start (integer nanoseconds)."""
    return FakeClock()


# --- the fake Nitro NSM and KMS (from swqos-kms-nitro) ----------------------------------------


def _kms_nitro(module: str) -> Any:
    try:
        return __import__(f"swqos_kms_nitro.{module}", fromlist=["_"])
    except ImportError as exc:
        raise pytest.UsageError(f"this fixture needs the swqos-kms-nitro distribution ({exc})") from None


@pytest.fixture(scope="session")
def fake_nsm_pki() -> Any:
    """The fake NSM's test root (``swqos_kms_nitro.fake_nsm.FakePki``), generated once per session."""
    return _kms_nitro("fake_nsm").FakePki.generate()


@pytest.fixture
def fake_nsm_dir(tmp_path: Path, fake_nsm_pki: Any) -> Path:
    """A directory holding the fake NSM root (cert + 0600 key): the ``fake_pki_dir`` setting of the
    ``nitro_fake`` key provider, so an enclave child process runs a matching fake NSM."""
    directory = tmp_path / "fake-nsm"
    fake_nsm_pki.save(directory)
    return directory


@pytest.fixture
def fake_nsm(fake_nsm_pki: Any) -> Any:
    """A ``FakeNsm`` on the session's root: documents in the real NSM's exact shape, default PCRs."""
    return _kms_nitro("fake_nsm").FakeNsm(fake_nsm_pki)


@pytest.fixture
def fake_kms(fake_nsm_pki: Any) -> Iterator[Any]:
    """A running fake KMS (``swqos_kms_nitro.fake_kms.FakeKms``) on loopback that trusts the fake
    NSM root; ``fake_kms.endpoint_url``, ``.region``, ``.create_key(policy)``, ``.calls``."""
    with _kms_nitro("fake_kms").FakeKms(fake_nsm_pki.root_cert) as server:
        yield server
