"""Hook implementations of swqos-testing: test doubles only, all marked insecure."""

from swqos_core import hookimpl
from swqos_testing.fakes import (
    FakeKeyProvider,
    FakeKeySettings,
    HeaderClientIp,
    SlowSigner,
    SlowSignerSettings,
    StaticTokenAuthenticator,
    StaticTokenSettings,
)


@hookimpl
def swqos_register_authenticators(register):
    register("static", lambda s, ctx: StaticTokenAuthenticator(s), StaticTokenSettings, insecure=True,
             description="fixed bearer tokens (tests)")


@hookimpl
def swqos_register_client_ip_resolvers(register):
    register("test_header", lambda s, ctx: HeaderClientIp(), insecure=True,
             description="client address from x-test-client-ip, trusted from anyone (tests)")


@hookimpl
def swqos_register_key_providers(register):
    register("fake", FakeKeyProvider, FakeKeySettings, insecure=True, description="fixed seed (tests)")


@hookimpl
def swqos_register_signers(register):
    register("slow_ed25519", lambda s, ctx: SlowSigner(s), SlowSignerSettings, insecure=True,
             description="Ed25519 with an artificial delay (back-pressure tests)")
