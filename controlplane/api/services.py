"""The public services the agent exposes and how each is attached to a server.

Each service is served by a real servicer class (api/servicers.py). Registering
one wraps each of its methods once, in one place: the size limit, then the access
check (api/auth.py), inside the error mapping (api/errors.py `guard`).

The public services and the agents' internal push-pull service share one gRPC
server, whose receive limit must fit a push-pull exchange of a large cluster
(32 MiB). gRPC limits sizes per server only, so the public services enforce their
own, smaller limit (gRPC's default of 4 MiB) when a request is decoded: a larger
request is answered RESOURCE_EXHAUSTED, naming the limit, before it is parsed.

Every service is attached as a generic handler only, never as gRPC's "registered
methods": grpc.aio's server loop waits on one pending future per registered
method and, for every call it accepts, passes all of them to `asyncio.wait`,
which adds and removes a callback on each. With the agent's 40-odd methods that
cost about 200 µs of server CPU per call on a 2-core machine and took a bare
server answering empty responses from 2,830 to 1,994 calls/s with 32 callers
(bench/rpc.py measures the agent against such a server).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import grpc.aio
from google.protobuf import message_factory
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor

from controlplane.api.auth import AccessPolicy, access_check
from controlplane.api.errors import Check, RpcObserver, guard
from controlplane.api.paging import MAX_PUBLIC_MESSAGE_BYTES
from controlplane.errors import ResourceExhausted
from controlplane.shell.pushpull import MAX_MESSAGE_BYTES as PUSH_PULL_MAX_MESSAGE_BYTES
from controlplane.v1 import (
    keyring_pb2,
    keyring_pb2_grpc,
    membership_pb2,
    membership_pb2_grpc,
    ring_pb2,
    ring_pb2_grpc,
    server_pool_pb2,
    server_pool_pb2_grpc,
)
from controlplane.wire.v1 import gossip_pb2, gossip_pb2_grpc


class Registrar(Protocol):
    """Registers a servicer on a server, with the access policy its calls must pass
    and, when metrics are on, the observer told of every call."""

    def __call__(
        self,
        servicer: Any,
        server: grpc.aio.Server,
        auth: AccessPolicy | None = None,
        observer: RpcObserver | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class PublicService:
    """One public gRPC service: its descriptor, its servicer base and its registrar."""

    name: str
    file: FileDescriptor
    servicer_base: type
    add_to_server: Registrar

    @property
    def full_name(self) -> str:
        return self.file.services_by_name[self.name].full_name

    @property
    def method_names(self) -> list[str]:
        return [m.name for m in self.file.services_by_name[self.name].methods]


class _GenericOnly:
    """A server as seen by a generated `add_*_to_server`: its generic handlers are
    added, its registered methods dropped (see the module docstring)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        pass


def generic_only(server: grpc.aio.Server) -> Any:
    """`server`, for a generated `add_*_to_server`, attaching its service as a
    generic handler only."""
    return _GenericOnly(server)


class OversizedRequest:
    """Stands in for a request too large to decode; the handler refuses it."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


def _bounded_parser(parse: Callable[[bytes], Any], limit: int) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        # Returned rather than raised: an exception in a deserializer reaches the
        # client as a bare INTERNAL, a domain error in the handler as a proper status.
        if len(data) > limit:
            return OversizedRequest(len(data))
        return parse(data)

    return deserialize


def _refusal(path: str, request: OversizedRequest, limit: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"{path}: the request is {request.size} bytes; requests to the public API "
        f"must be at most {limit} bytes ({limit // (1024 * 1024)} MiB)"
    )


def _size_check(path: str, limit: int, then: Check | None) -> Check:
    """Refuses the stand-in of an oversized request, then runs `then` (if any)."""

    def check(request: Any, context: Any) -> None:
        if request.__class__ is OversizedRequest:
            raise _refusal(path, request, limit)
        if then is not None:
            then(request, context)

    return check


_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def bounded_registrar(
    descriptor: ServiceDescriptor, limit: int = MAX_PUBLIC_MESSAGE_BYTES
) -> Registrar:
    """Registers a servicer of `descriptor` as the generated `add_*_to_server` does,
    except that each method is guarded once (errors mapped to statuses, with `auth`
    checked first) and requests larger than `limit` bytes are refused
    RESOURCE_EXHAUSTED before they are parsed."""
    service_name = descriptor.name

    def add_to_server(
        servicer: Any,
        server: grpc.aio.Server,
        auth: AccessPolicy | None = None,
        observer: RpcObserver | None = None,
    ) -> None:
        handlers = {}
        for method in descriptor.methods:
            path = f"/{descriptor.full_name}/{method.name}"
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            behavior = getattr(servicer, method.name)
            check = access_check(auth, f"{service_name}/{method.name}")
            handler = guard(path, behavior, _size_check(path, limit, check), observer)
            factory = _HANDLER_FACTORIES[(method.client_streaming, method.server_streaming)]
            handlers[method.name] = factory(
                handler,
                request_deserializer=_bounded_parser(request_class.FromString, limit),
                response_serializer=response_class.SerializeToString,
            )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(descriptor.full_name, handlers),)
        )

    return add_to_server


MEMBERSHIP = PublicService(
    "Membership",
    membership_pb2.DESCRIPTOR,
    membership_pb2_grpc.MembershipServicer,
    bounded_registrar(membership_pb2.DESCRIPTOR.services_by_name["Membership"]),
)
SERVER_POOL = PublicService(
    "ServerPool",
    server_pool_pb2.DESCRIPTOR,
    server_pool_pb2_grpc.ServerPoolServicer,
    bounded_registrar(server_pool_pb2.DESCRIPTOR.services_by_name["ServerPool"]),
)
RING = PublicService(
    "Ring",
    ring_pb2.DESCRIPTOR,
    ring_pb2_grpc.RingServicer,
    bounded_registrar(ring_pb2.DESCRIPTOR.services_by_name["Ring"]),
)
KEYRING = PublicService(
    "Keyring",
    keyring_pb2.DESCRIPTOR,
    keyring_pb2_grpc.KeyringServicer,
    bounded_registrar(keyring_pb2.DESCRIPTOR.services_by_name["Keyring"]),
)
PUBLIC_SERVICES = (MEMBERSHIP, SERVER_POOL, RING, KEYRING)
# The agents' internal service (push-pull anti-entropy): registered the same way,
# with the server's whole receive limit, since its exchanges may need it.
GOSSIP = PublicService(
    "Gossip",
    gossip_pb2.DESCRIPTOR,
    gossip_pb2_grpc.GossipServicer,
    bounded_registrar(
        gossip_pb2.DESCRIPTOR.services_by_name["Gossip"], limit=PUSH_PULL_MAX_MESSAGE_BYTES
    ),
)
