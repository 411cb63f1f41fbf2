"""swqos benchmark harness: ``python -m benchmarks`` (see docs/performance.md).

Importing swqos_core here, before any module of the harness imports grpc, gives every benchmark
process (runner, echo server, proxy, load workers: all import this package first) the same
TLS 1.3-only cipher setting as the real proxy.
"""

import swqos_core  # noqa: F401
