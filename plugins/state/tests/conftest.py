from __future__ import annotations

import pytest

from swqos_state.testing import RedisServer, available


@pytest.fixture
def redis_server(tmp_path):
    if not available():
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server); the redis store "
                    "tests need a real server")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_redis_server(tmp_path):
    if not available():
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis-tls", tls=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
