"""Generated messages and gRPC stubs of the swqos public API (``proto/swqos/v1/signer.proto``).

- ``swqos_proto.signer_pb2``: the messages (needs only protobuf).
- ``swqos_proto.signer_pb2_grpc``: ``SignerStub`` for a plain grpcio caller and
  ``add_SignerServicer_to_server`` (needs grpcio, at least the version that generated it:
  ``GRPC_GENERATED_VERSION`` in the module; it says so at import otherwise)::

      from swqos_proto import signer_pb2, signer_pb2_grpc
      stub = signer_pb2_grpc.SignerStub(grpc.secure_channel(target, credentials))
      stub.GetIdentity(signer_pb2.GetIdentityRequest(), metadata=[("authorization", f"Bearer {token}")])

Regenerate with ``python proto/generate.py`` after editing the ``.proto`` file; a test
checks that the checked-in modules match the source.
"""

from swqos_proto import signer_pb2

SERVICE = "swqos.v1.Signer"
SIGN_METHOD = f"/{SERVICE}/SignCertificateVerify"
IDENTITY_METHOD = f"/{SERVICE}/GetIdentity"

__all__ = ["IDENTITY_METHOD", "SERVICE", "SIGN_METHOD", "signer_pb2"]
