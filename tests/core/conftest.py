"""Fixtures for core integration tests: a real stack whose authenticator is a fixed-token fake,
so the core is tested independently of the JWT plugin."""

import pytest

from swqos_testing.stack import running_stack

TRADER_TOKEN = "trader-token-0123456789abcdef"
PROBE_TOKEN = "probe-token-0123456789abcdef"

STATIC_AUTH = {
    "swqos": {"plugins": ["testing"], "allow_test_plugins": True},
    "pipeline": {"auth": ["static"]},
    "layers": {"auth": {"jwt": None, "static": {
        "tokens": {TRADER_TOKEN: "alice", PROBE_TOKEN: "market-probe"},
        "roles": {"market-probe": "probe"},
    }}},
}


def static_stack(tmp_path, proxy=None, **kw):
    from swqos_testing.stack import merge

    return running_stack(tmp_path, proxy=merge(STATIC_AUTH, proxy or {}), **kw)


@pytest.fixture
async def stack(tmp_path):
    async with static_stack(tmp_path) as s:
        yield s
