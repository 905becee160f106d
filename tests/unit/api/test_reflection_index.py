"""Reflection answers from the descriptor set with the protos' comments (no server)."""

from __future__ import annotations

from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from controlplane.api.reflection import ReflectionServicer, load_index


def comment_of(file: descriptor_pb2.FileDescriptorProto, path: list[int]) -> str:
    for location in file.source_code_info.location:
        if list(location.path) == path:
            return location.leading_comments
    return ""


def test_methods_fields_and_enum_values_are_symbols() -> None:
    index = load_index()
    for symbol in (
        "controlplane.v1.Ring",
        "controlplane.v1.Ring.GetNode",
        ".controlplane.v1.GetNodeRequest",
        "controlplane.v1.GetNodeRequest.key",
        "controlplane.v1.MemberStatus",
        "controlplane.v1.MEMBER_STATUS_ALIVE",
    ):
        assert index.file_of_symbol(symbol) is not None, symbol
    assert index.file_of_symbol("controlplane.v1.Ring.GetNode") == "controlplane/v1/ring.proto"
    assert index.file_of_symbol("grpc.health.v1.Health.Check") == "grpc_health/v1/health.proto"
    assert index.file_of_symbol("controlplane.v1.Ring.NoSuchMethod") is None


def test_a_method_resolves_to_its_file_with_comments_and_imports() -> None:
    servicer = ReflectionServicer(["controlplane.v1.Ring"], load_index)
    response = servicer.answer(
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="controlplane.v1.Ring.GetNode"
        )
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    ring = files[0]
    assert ring.name == "controlplane/v1/ring.proto"
    (service,) = ring.service
    method_index = [m.name for m in service.method].index("GetNode")
    # FileDescriptorProto.service = 6, ServiceDescriptorProto.method = 2
    assert "GetNode returns the node that owns a key" in comment_of(ring, [6, 0, 2, method_index])


def test_the_error_details_come_from_the_default_pool() -> None:
    # The agent attaches google.rpc details to errors; grpcurl resolves them by name.
    import google.rpc.error_details_pb2  # noqa: F401  (registers the file in the pool)

    index = load_index()
    assert index.file_of_symbol("google.rpc.BadRequest") == "google/rpc/error_details.proto"


def test_unknown_symbols_and_empty_requests() -> None:
    servicer = ReflectionServicer(["a.B"], load_index)
    missing = servicer.answer(reflection_pb2.ServerReflectionRequest(file_containing_symbol="x.Y"))
    assert missing.error_response.error_code == 5  # NOT_FOUND
    listed = servicer.answer(reflection_pb2.ServerReflectionRequest(list_services=""))
    assert [s.name for s in listed.list_services_response.service] == ["a.B"]
    empty = servicer.answer(reflection_pb2.ServerReflectionRequest())
    assert empty.error_response.error_code == 3  # INVALID_ARGUMENT
