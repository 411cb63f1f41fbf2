"""Test doubles, fixtures and conformance suites for swqos and its plugins (a pytest plugin).

Importing any part of the kit imports :mod:`swqos_core` first: it sets ``GRPC_SSL_CIPHER_SUITES``
(TLS 1.3 only), which grpc reads once, when it is first imported.
"""

import swqos_core  # noqa: F401  (before anything below imports grpc)
