"""Server reflection through the real stack, as the two kinds of reflection clients see it.

- ``grpc.reflection.v1alpha``: grpcio-reflection's own client (``ProtoReflectionDescriptorDatabase``).
- ``grpc.reflection.v1``: a client compiled by protoc, at test time, from the v1 protocol written
  below from the gRPC reflection spec (field numbers and all), in a descriptor pool of its own: it
  shares nothing with the server's v1 descriptor, so a wrong rename on the server would show here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from swqos_core.reflection import V1_FILE, V1_SERVICE, V1ALPHA_SERVICE

protoc = pytest.importorskip("grpc_tools.protoc")

V1_PROTO = """
syntax = "proto3";
package grpc.reflection.v1;
service ServerReflection {
  rpc ServerReflectionInfo(stream ServerReflectionRequest) returns (stream ServerReflectionResponse);
}
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    ExtensionRequest file_containing_extension = 5;
    string all_extension_numbers_of_type = 6;
    string list_services = 7;
  }
}
message ExtensionRequest { string containing_type = 1; int32 extension_number = 2; }
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ExtensionNumberResponse all_extension_numbers_response = 5;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ExtensionNumberResponse { string base_type_name = 1; repeated int32 extension_number = 2; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ServiceResponse { string name = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }
"""

EXPECTED = {"swqos.v1.Signer", "grpc.health.v1.Health", V1_SERVICE, V1ALPHA_SERVICE}


def _v1_client_pool(tmp_path: Path) -> descriptor_pool.DescriptorPool:
    (tmp_path / "v1spec").mkdir()
    (tmp_path / "v1spec" / "reflection_v1.proto").write_text(V1_PROTO)
    out = tmp_path / "v1.desc"
    assert protoc.main(["protoc", f"-I{tmp_path}", f"--descriptor_set_out={out}", "v1spec/reflection_v1.proto"]) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return pool


async def test_reflection_v1_with_an_independent_client(stack, tmp_path) -> None:
    pool = _v1_client_pool(tmp_path)
    request_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest"))
    response_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse"))
    info = stack.channel().stream_stream(f"/{V1_SERVICE}/ServerReflectionInfo",
                                         request_serializer=request_cls.SerializeToString,
                                         response_deserializer=response_cls.FromString)
    requests = [request_cls(list_services=""), request_cls(file_containing_symbol="swqos.v1.Signer"),
                request_cls(file_containing_symbol=V1_SERVICE), request_cls(file_containing_symbol="no.such.Thing")]
    responses = [r async for r in info(iter(requests), timeout=5)]
    assert len(responses) == 4

    listed, signer, v1, missing = responses
    assert {s.name for s in listed.list_services_response.service} == EXPECTED
    assert listed.original_request.list_services == ""

    files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in signer.file_descriptor_response.file_descriptor_proto]
    signer_file = next(f for f in files if f.package == "swqos.v1")
    assert [m.name for m in signer_file.service[0].method] == ["SignCertificateVerify", "GetIdentity"]

    # The server's description of v1 has exactly the spec's fields (names, numbers, types, oneofs).
    (served,) = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in v1.file_descriptor_response.file_descriptor_proto]
    assert served.name == V1_FILE and served.package == "grpc.reflection.v1"
    spec = descriptor_pb2.FileDescriptorProto()
    pool.FindFileByName("v1spec/reflection_v1.proto").CopyToProto(spec)

    def shape(fdp):
        return {m.name: sorted((f.name, f.number, f.type, f.label, f.type_name, f.HasField("oneof_index"))
                               for f in m.field) for m in fdp.message_type}

    assert shape(served) == shape(spec)
    assert [(m.input_type, m.output_type, m.client_streaming, m.server_streaming) for m in served.service[0].method] \
        == [(m.input_type, m.output_type, m.client_streaming, m.server_streaming) for m in spec.service[0].method]

    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


async def test_reflection_v1alpha_with_grpcs_own_client(stack) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    def browse() -> tuple[set[str], list[str], str]:
        creds = grpc.ssl_channel_credentials(root_certificates=stack.ca_pem)
        with grpc.secure_channel(stack.target, creds, options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            db = ProtoReflectionDescriptorDatabase(ch)
            pool = descriptor_pool.DescriptorPool(db)
            signer = pool.FindServiceByName("swqos.v1.Signer")
            v1 = pool.FindServiceByName(V1_SERVICE)
            return set(db.get_services()), [m.name for m in signer.methods], v1.file.name

    services, methods, v1_file = await asyncio.to_thread(browse)
    assert services == EXPECTED
    assert methods == ["SignCertificateVerify", "GetIdentity"]
    assert v1_file == V1_FILE
