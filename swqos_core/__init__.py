"""swqos: a signing proxy that lends a Solana validator's QUIC QoS without lending its key.

Public API for plugin authors: ``hookimpl`` to mark hook implementations, the layer protocols
and values in :mod:`swqos_core.layers`, the errors in :mod:`swqos_core.errors`.
"""

from __future__ import annotations

import os

# grpcio's Python API has no minimum-TLS-version setting. Restricting its cipher list to a
# PSK-only TLS 1.2 suite (no PSK is ever configured) leaves TLS 1.3 as the only protocol a
# handshake can complete with. grpc reads this once, when it is first imported, so it must be
# set before any ``import grpc``; the server re-checks it at boot with a real TLS 1.2 probe
# and refuses to serve if the restriction did not take (docs/tls.md).
TLS13_ONLY_CIPHER_SUITES = "ECDHE-PSK-AES128-CBC-SHA"
os.environ["GRPC_SSL_CIPHER_SUITES"] = TLS13_ONLY_CIPHER_SUITES
# grpc core logs every failed handshake at INFO, including our own boot-time TLS 1.2 probe.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pluggy  # noqa: E402

from swqos_core.errors import ConfigError, Rejection  # noqa: E402
from swqos_core.layers import (  # noqa: E402
    BuildContext,
    Call,
    ClientAddress,
    KeyMaterial,
    Principal,
    RequestHead,
)

__version__ = "0.1.0"
#: Bumped whenever a hook signature or a layer protocol changes.
HOOK_API_VERSION = 1

#: Marker for hook implementations: ``@hookimpl def swqos_register_signers(register): ...``
hookimpl = pluggy.HookimplMarker("swqos")

__all__ = [
    "HOOK_API_VERSION",
    "BuildContext",
    "Call",
    "ClientAddress",
    "ConfigError",
    "KeyMaterial",
    "Principal",
    "Rejection",
    "RequestHead",
    "__version__",
    "hookimpl",
]
