"""Generated messages of the swqos public API (``proto/swqos/v1/signer.proto``).

Regenerate with ``python proto/generate.py`` after editing the ``.proto`` file; a test
checks that the checked-in module matches the source.
"""

from swqos_proto import signer_pb2

SERVICE = "swqos.v1.Signer"
SIGN_METHOD = f"/{SERVICE}/SignCertificateVerify"
IDENTITY_METHOD = f"/{SERVICE}/GetIdentity"

__all__ = ["IDENTITY_METHOD", "SERVICE", "SIGN_METHOD", "signer_pb2"]
