"""Root conftest: import swqos_core before anything imports grpc.

swqos_core sets GRPC_SSL_CIPHER_SUITES (TLS 1.3 only) on import, and grpc reads it once when
it is first imported; the proxy refuses to serve if that did not happen (docs/tls.md).
"""

import swqos_core  # noqa: F401
