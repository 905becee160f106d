"""Server reflection (grpc.reflection.v1alpha) that serves the .proto comments.

The generated `_pb2` modules carry descriptors without source information, and
the descriptor pool that grpcio-reflection serves from finds messages and
services but not methods. So `grpcurl describe controlplane.v1.Ring.GetNode`
answered "Symbol not found", and `describe` showed no comments.

This servicer answers from `descriptor_set.binpb` (written by `tools/protogen.py`
with `--include_source_info`), which holds the public API with its comments, and
from the generated descriptors of the other services the agent serves (health,
reflection). It indexes every symbol a file defines, methods and fields included,
the way protoc's own descriptor pool does. Anything else (such as the
`google.rpc` error details the agent attaches to errors) comes from the process's
default descriptor pool, as it did from grpcio-reflection.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from controlplane.api.services import generic_only

if TYPE_CHECKING:
    from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
    from google.protobuf.descriptor_pb2 import FileDescriptorProto as FileProto

log = logging.getLogger("controlplane.api")

DESCRIPTOR_SET = "descriptor_set.binpb"
SERVICE_NAME = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name


def _symbols(file: FileProto) -> Iterable[str]:
    """Every fully-qualified name `file` defines (messages, fields, oneofs, enums, enum
    values, services, methods, extensions), as protoc's DescriptorPool indexes them."""
    prefix = f"{file.package}." if file.package else ""

    def enums(scope: str, items: Sequence[descriptor_pb2.EnumDescriptorProto]) -> Iterable[str]:
        for enum in items:
            yield scope + enum.name
            # Enum values are siblings of their enum (C++ scoping rules).
            yield from (scope + value.name for value in enum.value)

    def messages(scope: str, items: Sequence[descriptor_pb2.DescriptorProto]) -> Iterable[str]:
        for message in items:
            name = scope + message.name
            yield name
            inner = name + "."
            yield from (inner + item.name for item in message.field)
            yield from (inner + item.name for item in message.oneof_decl)
            yield from (inner + item.name for item in message.extension)
            yield from enums(inner, message.enum_type)
            yield from messages(inner, message.nested_type)

    yield from messages(prefix, file.message_type)
    yield from enums(prefix, file.enum_type)
    yield from (prefix + item.name for item in file.extension)
    for service in file.service:
        yield prefix + service.name
        yield from (f"{prefix}{service.name}.{method.name}" for method in service.method)


class DescriptorIndex:
    """FileDescriptorProtos by file name and by every symbol they define; what it
    lacks it looks up in `fallback` (a descriptor pool), once."""

    def __init__(
        self,
        files: Iterable[FileProto] = (),
        fallback: descriptor_pool.DescriptorPool | None = None,
    ) -> None:
        self._files: dict[str, FileProto] = {}
        self._by_symbol: dict[str, str] = {}
        self._fallback = fallback
        for file in files:
            self.add(file)

    def add(self, file: FileProto) -> None:
        """Adds `file` unless a file of that name is known (the first one wins)."""
        if file.name in self._files:
            return
        self._files[file.name] = file
        for symbol in _symbols(file):
            self._by_symbol.setdefault(symbol, file.name)

    def file(self, name: str) -> FileProto | None:
        if name not in self._files and self._fallback is not None:
            try:
                self._add_from_pool(self._fallback.FindFileByName(name))
            except KeyError:
                return None
        return self._files.get(name)

    def file_of_symbol(self, symbol: str) -> str | None:
        symbol = symbol.removeprefix(".")
        if symbol not in self._by_symbol and self._fallback is not None:
            try:
                self._add_from_pool(self._fallback.FindFileContainingSymbol(symbol))
            except KeyError:
                return None
        return self._by_symbol.get(symbol)

    def _add_from_pool(self, file: descriptor.FileDescriptor) -> None:
        from google.protobuf.descriptor_pb2 import FileDescriptorProto

        for dependency in file.dependencies:
            self._add_from_pool(dependency)
        proto = FileDescriptorProto()
        file.CopyToProto(proto)
        self.add(proto)

    def with_dependencies(self, name: str) -> list[bytes]:
        """`name` and every file it imports, transitively, serialized; the file first."""
        ordered: list[str] = []
        pending = [name]
        while pending:
            current = pending.pop()
            if current in ordered or current not in self._files:
                continue
            ordered.append(current)
            pending.extend(reversed(self._files[current].dependency))
        return [self._files[n].SerializeToString() for n in ordered]


def _generated_files() -> list[FileProto]:
    """The served services' files as the generated modules carry them (no comments)."""
    from google.protobuf.descriptor_pb2 import FileDescriptorProto
    from grpc_health.v1 import health_pb2

    from controlplane.v1 import keyring_pb2, membership_pb2, ring_pb2, server_pool_pb2

    modules: list[Any] = [
        keyring_pb2,
        membership_pb2,
        ring_pb2,
        server_pool_pb2,
        health_pb2,
        reflection_pb2,
    ]
    files: list[FileProto] = []
    seen: set[str] = set()

    def add(descriptor: Any) -> None:
        if descriptor.name in seen:
            return
        seen.add(descriptor.name)
        for dependency in descriptor.dependencies:
            add(dependency)
        files.append(FileDescriptorProto.FromString(descriptor.serialized_pb))

    for module in modules:
        add(module.DESCRIPTOR)
    return files


def load_index() -> DescriptorIndex:
    """The public API with its comments (when the descriptor set is installed), then
    every other file the served services need."""
    from importlib import resources

    from google.protobuf import descriptor_pb2, descriptor_pool

    index = DescriptorIndex(fallback=descriptor_pool.Default())
    try:
        data = resources.files("controlplane.api").joinpath(DESCRIPTOR_SET).read_bytes()
    except (FileNotFoundError, OSError):
        log.warning("%s is missing: reflection serves the API without comments", DESCRIPTOR_SET)
    else:
        for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
            index.add(file)
    for file in _generated_files():
        index.add(file)
    return index


def _not_found(
    request: reflection_pb2.ServerReflectionRequest, what: str
) -> reflection_pb2.ServerReflectionResponse:
    return reflection_pb2.ServerReflectionResponse(
        error_response=reflection_pb2.ErrorResponse(
            error_code=grpc.StatusCode.NOT_FOUND.value[0], error_message=f"{what} not found"
        ),
        original_request=request,
    )


class ReflectionServicer:
    """grpc.reflection.v1alpha.ServerReflection over a :class:`DescriptorIndex`,
    which `load` builds at the first request: the index and protobuf's
    descriptor.proto classes it is made of take about 3 MB that an agent nobody
    inspects never needs."""

    def __init__(self, service_names: Iterable[str], load: Callable[[], DescriptorIndex]) -> None:
        self._service_names = sorted(set(service_names))
        self._load = load

    @functools.cached_property
    def _index(self) -> DescriptorIndex:
        return self._load()

    def answer(
        self, request: reflection_pb2.ServerReflectionRequest
    ) -> reflection_pb2.ServerReflectionResponse:
        """The response to one request of the stream."""
        kind = request.WhichOneof("message_request")
        index = self._index
        if kind == "list_services":
            return reflection_pb2.ServerReflectionResponse(
                list_services_response=reflection_pb2.ListServiceResponse(
                    service=[reflection_pb2.ServiceResponse(name=n) for n in self._service_names]
                ),
                original_request=request,
            )
        if kind in ("file_by_filename", "file_containing_symbol"):
            if kind == "file_by_filename":
                name: str | None = request.file_by_filename
                if index.file(request.file_by_filename) is None:
                    name = None
            else:
                name = index.file_of_symbol(request.file_containing_symbol)
            if name is None:
                return _not_found(request, getattr(request, kind))
            return reflection_pb2.ServerReflectionResponse(
                file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                    file_descriptor_proto=index.with_dependencies(name)
                ),
                original_request=request,
            )
        if kind == "all_extension_numbers_of_type":
            type_name = request.all_extension_numbers_of_type
            if index.file_of_symbol(type_name) is None:
                return _not_found(request, type_name)
            # The served files declare no extensions.
            return reflection_pb2.ServerReflectionResponse(
                all_extension_numbers_response=reflection_pb2.ExtensionNumberResponse(
                    base_type_name=type_name.removeprefix(".")
                ),
                original_request=request,
            )
        if kind == "file_containing_extension":
            extension = request.file_containing_extension
            return _not_found(
                request, f"extension {extension.extension_number} of {extension.containing_type}"
            )
        return reflection_pb2.ServerReflectionResponse(
            error_response=reflection_pb2.ErrorResponse(
                error_code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                error_message="empty reflection request",
            ),
            original_request=request,
        )

    async def ServerReflectionInfo(
        self,
        request_iterator: AsyncIterator[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        async for request in request_iterator:
            yield self.answer(request)


def add_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serves reflection for `service_names` (and for itself) on `server`."""
    names = [*service_names, SERVICE_NAME]
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        ReflectionServicer(names, load_index), generic_only(server)
    )
