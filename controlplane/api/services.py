"""The public services the agent exposes and how each is attached to a server.

Every RPC of the public API is registered from the first release on; an RPC whose
behaviour the running version does not provide answers UNIMPLEMENTED with a
message that says what is missing, so clients can tell "not yet" from "broken".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc.aio
from google.protobuf.descriptor import FileDescriptor

from controlplane.api.auth import TokenCheck, authenticated
from controlplane.api.errors import guard
from controlplane.errors import Unimplemented
from controlplane.gossip.v1 import gossip_pb2, gossip_pb2_grpc
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


def agent_version() -> str:
    try:
        return version("controlplane")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class PublicService:
    """One public gRPC service: its descriptor, its servicer base and its registrar."""

    name: str
    file: FileDescriptor
    servicer_base: type
    add_to_server: Callable[[Any, grpc.aio.Server], None]

    @property
    def full_name(self) -> str:
        return self.file.services_by_name[self.name].full_name

    @property
    def method_names(self) -> list[str]:
        return [m.name for m in self.file.services_by_name[self.name].methods]


MEMBERSHIP = PublicService(
    "Membership",
    membership_pb2.DESCRIPTOR,
    membership_pb2_grpc.MembershipServicer,
    membership_pb2_grpc.add_MembershipServicer_to_server,
)
SERVER_POOL = PublicService(
    "ServerPool",
    server_pool_pb2.DESCRIPTOR,
    server_pool_pb2_grpc.ServerPoolServicer,
    server_pool_pb2_grpc.add_ServerPoolServicer_to_server,
)
RING = PublicService(
    "Ring",
    ring_pb2.DESCRIPTOR,
    ring_pb2_grpc.RingServicer,
    ring_pb2_grpc.add_RingServicer_to_server,
)
KEYRING = PublicService(
    "Keyring",
    keyring_pb2.DESCRIPTOR,
    keyring_pb2_grpc.KeyringServicer,
    keyring_pb2_grpc.add_KeyringServicer_to_server,
)
PUBLIC_SERVICES = (MEMBERSHIP, SERVER_POOL, RING, KEYRING)
# The agents' internal service (push-pull anti-entropy); built the same way.
GOSSIP = PublicService(
    "Gossip",
    gossip_pb2.DESCRIPTOR,
    gossip_pb2_grpc.GossipServicer,
    gossip_pb2_grpc.add_GossipServicer_to_server,
)


def pending_servicer(
    service: PublicService, missing: str, *implemented: object, auth: TokenCheck | None = None
) -> Any:
    """A servicer for `service` whose RPCs, except those the `implemented` objects
    provide, answer UNIMPLEMENTED naming what this version lacks (`missing`); with
    `auth`, every RPC first checks the caller's token."""
    namespace: dict[str, object] = {}
    for method in service.method_names:
        path = f"/{service.full_name}/{method}"
        provider = next((impl for impl in implemented if hasattr(impl, method)), None)
        behavior = getattr(provider, method) if provider else _unimplemented(path, missing)
        if auth is not None:
            behavior = authenticated(behavior, auth)
        # A bound method (or plain function) of another object, exposed as a method of
        # the servicer class, with domain errors mapped to statuses.
        namespace[method] = staticmethod(guard(path, behavior))
    return type(f"Pending{service.name}Servicer", (service.servicer_base,), namespace)()


def _unimplemented(path: str, missing: str) -> Callable[..., Any]:
    message = f"{path} is not available in controlplane {agent_version()}: {missing}"

    async def handler(request: object, context: object) -> None:
        raise Unimplemented(message)

    return handler
