"""gRPC server reflection under both names clients use: ``grpc.reflection.v1`` and ``v1alpha``.

grpcio-reflection ships only ``grpc.reflection.v1alpha``; grpcurl, Postman and the newer grpc
tools ask for ``grpc.reflection.v1`` first. The two protocols are the same messages with the same
field numbers under another package name, so the v1 service is served by the v1alpha servicer
with v1alpha (de)serializers, and a v1 descriptor (the v1alpha file renamed) is added to the
descriptor pool so that reflection can describe the v1 service too.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection as v1alpha
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as v1alpha_grpc

V1ALPHA_SERVICE = v1alpha.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"


class GenericOnly:
    """The server as a generated ``add_*Servicer_to_server`` sees it: handlers are added as generic
    handlers only. Once any method is pre-registered, grpcio's aio server spends about 20,000 more
    instructions on every call, Signer's included (callgrind, ``python -m benchmarks --only
    instructions``); health and reflection gain nothing from pre-registration."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: object) -> None:
        """Skipped: the generic handler added beside it serves the same methods."""


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The v1 reflection file: v1alpha's, with every name moved to package ``grpc.reflection.v1``."""
    fdp = descriptor_pb2.FileDescriptorProto()
    v1alpha_pb2.DESCRIPTOR.CopyToProto(fdp)
    old_package = fdp.package
    fdp.name, fdp.package = V1_FILE, V1_PACKAGE
    fdp.ClearField("options")
    for message in fdp.message_type:
        for f in message.field:
            if f.type_name.startswith(f".{old_package}."):
                f.type_name = f".{V1_PACKAGE}." + f.type_name[len(old_package) + 2:]
    for service in fdp.service:
        for method in service.method:
            for attr in ("input_type", "output_type"):
                name = getattr(method, attr)
                setattr(method, attr, f".{V1_PACKAGE}." + name[len(old_package) + 2:])
    return fdp


def _ensure_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.Add(v1_file_descriptor())


def enable_server_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection v1 and v1alpha on ``server``, listing ``service_names`` and both reflection services."""
    pool = descriptor_pool.Default()
    _ensure_v1_descriptor(pool)
    names = (*service_names, V1_SERVICE, V1ALPHA_SERVICE)
    servicer = v1alpha.aio.ReflectionServicer(names, pool=pool)
    v1alpha_grpc.add_ServerReflectionServicer_to_server(servicer, GenericOnly(server))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=v1alpha_pb2.ServerReflectionRequest.FromString,
            response_serializer=v1alpha_pb2.ServerReflectionResponse.SerializeToString,
        ),
    }),))


__all__ = ["V1ALPHA_SERVICE", "V1_SERVICE", "GenericOnly", "enable_server_reflection", "v1_file_descriptor"]
