"""Test doubles. Every one is registered as insecure: a config selects it only with
``[swqos] allow_test_plugins = true``."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field

from swqos_core.builtin.ed25519 import Ed25519Signer
from swqos_core.errors import unauthenticated
from swqos_core.layers import BuildContext, ClientAddress, KeyMaterial, Principal, RequestHead
from swqos_core.net import parse_ip


@dataclass
class StaticTokenSettings:
    #: token → subject
    tokens: dict[str, str] = field(default_factory=dict)
    #: subject → role ("trader" when absent)
    roles: dict[str, str] = field(default_factory=dict)


class StaticTokenAuthenticator:
    """Bearer tokens from a fixed table, compared in constant time."""

    def __init__(self, settings: StaticTokenSettings) -> None:
        self.tokens = {t.encode(): s for t, s in settings.tokens.items()}
        self.roles = settings.roles

    async def authenticate(self, head: RequestHead, client: ClientAddress) -> Principal | None:
        values = head.header_values("authorization")
        if not values:
            return None
        scheme, _, token = values[0].partition(" ")
        if len(values) != 1 or scheme != "Bearer":
            raise unauthenticated("malformed authorization", label="malformed")
        for known, subject in self.tokens.items():
            if hmac.compare_digest(known, token.encode()):
                return Principal(subject, self.roles.get(subject, "trader"), "static")  # type: ignore[arg-type]
        raise unauthenticated("unknown token", label="unknown")


class HeaderClientIp:
    """Client address from ``x-test-client-ip``, trusted from anyone: lets loopback tests vary addresses."""

    async def resolve(self, head: RequestHead) -> ClientAddress | None:
        values = head.header_values("x-test-client-ip")
        if len(values) != 1:
            return None
        ip = parse_ip(values[0])
        return ClientAddress(ip, "test-header", head.peer) if ip else None


@dataclass
class FakeKeySettings:
    #: 32-byte Ed25519 seed, hex.
    seed_hex: str
    #: Hex bytes returned as the attestation document.
    document_hex: str = ""
    measurement: str | None = None
    #: Block each attestation this long (a slow NSM), for back-pressure tests.
    attest_delay_ms: int = 0
    #: Make every attestation fail (a broken NSM), for fault-path tests.
    attest_fails: bool = False


class FakeKeyProvider:
    def __init__(self, settings: FakeKeySettings, ctx: BuildContext) -> None:
        self.seed = bytes.fromhex(settings.seed_hex)
        self.document = bytes.fromhex(settings.document_hex)
        self._measurement = settings.measurement
        self.attest_delay = settings.attest_delay_ms / 1000
        self.attest_fails = settings.attest_fails

    def load(self) -> KeyMaterial:
        return KeyMaterial(bytearray(self.seed), "fake")

    def attest(self, public_key: bytes, nonce: bytes) -> bytes:
        time.sleep(self.attest_delay)
        if self.attest_fails and nonce:  # the host's own identity query (empty nonce) still works
            raise OSError("NSM device error (fake)")
        return self.document

    def measurement(self) -> str | None:
        return self._measurement


@dataclass
class SlowSignerSettings:
    delay_ms: int = 50


class SlowSigner(Ed25519Signer):
    """Ed25519 that blocks the enclave for ``delay_ms`` per signature: a deliberately slow enclave."""

    def __init__(self, settings: SlowSignerSettings) -> None:
        super().__init__()
        self.delay = settings.delay_ms / 1000

    def sign(self, message: bytes) -> bytes:
        time.sleep(self.delay)
        return super().sign(message)
