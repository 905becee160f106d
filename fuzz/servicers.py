"""Fuzzes the public servicers' request handling: Membership (with the leader RPCs),
ServerPool (pools and heartbeats) and Ring, built in-process as ``controlplane.agent``
``_servicers`` builds them (the servicer classes of ``controlplane.api.servicers``
over the same implementations, each method guarded as registration guards it;
Keyring is left out), and called with a fake ``ServicerContext``.

The first byte picks an RPC; the rest is parsed as its request message (bytes that
are not one are skipped: gRPC refuses them before any handler). Every call goes
through the guard that maps errors to statuses, so the expected outcomes are a
response or an abort with a status a caller can act on; an abort with INTERNAL (an
exception the guard caught) or UNKNOWN, or any exception escaping the guard, is a
crash. Server-streaming RPCs run until their first response or a short timeout.

Nothing leaves the process and no socket is opened: a join parses its addresses but
contacts no one, leave does nothing, and pool health pings answer from memory.

    python -m fuzz.servicers --seconds 60
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any

import atheris  # type: ignore[import-untyped]
import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

# Only the project is instrumented: coverage of grpc, protobuf and asyncio would not
# guide the fuzzer and instrumenting them costs seconds at every start.
with atheris.instrument_imports(include=["controlplane"]):
    from controlplane.api.errors import guard
    from controlplane.api.heartbeat import HeartbeatRpcs
    from controlplane.api.hub import EventHub
    from controlplane.api.membership import LeaderRpcs, MembershipService
    from controlplane.api.queries import QueryRpcs
    from controlplane.api.ring import RingService
    from controlplane.api.server_pool import PoolRegistry, ServerPoolRpcs
    from controlplane.api.servicers import MembershipServicer, RingServicer, ServerPoolServicer
    from controlplane.api.services import MEMBERSHIP, RING, SERVER_POOL, PublicService
    from controlplane.election.effects import ElectionStatus
    from controlplane.heartbeat.tracker import HeartbeatTracker
    from controlplane.membership import Membership
    from controlplane.pool import Server
    from controlplane.rings.directory import RingDirectory
    from controlplane.shell.queries import QueryDriver, QueryHandlers
    from controlplane.shell.runtime import parse_address
    from fuzz import _cores
    from fuzz.runner import main

NAME = "servicers"
# Statuses that mean a handler raised something its guard did not expect.
BAD_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
# Streaming RPCs wait for news; the first answer, or none within this, is enough.
STREAM_WAIT = 0.002


class Aborted(Exception):
    """What the fake context's ``abort`` raises, as grpc's AbortError would."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


class BadStatus(Exception):
    """The servicer answered INTERNAL or UNKNOWN: a bug behind the guard."""


class FakeContext:
    """The parts of ``grpc.aio.ServicerContext`` the servicers use."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def peer(self) -> str:
        return "ipv4:10.0.0.9:50000"

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def time_remaining(self) -> float:
        return 5.0

    def cancelled(self) -> bool:
        return False

    async def write(self, message: object) -> None:
        pass

    async def abort(self, code: grpc.StatusCode, details: str = "", trailers: Any = ()) -> None:
        raise Aborted(code, details)


class OfflineRuntime:
    """The runtime surface MembershipService uses, without sockets: a join parses its
    addresses as the real runtime does (``parse_address``) and counts those that parse
    as contacted; effects are dropped."""

    def __init__(self, layer: Membership | None = None) -> None:
        self.now = _cores.NOW
        self.layer = layer
        self.udp = self

    def apply(self, effects: Sequence[object]) -> None:
        list(effects)

    # Queries: broadcasts, datagrams and channel routes go nowhere.
    def send(self, *args: object) -> None:
        pass

    def on_channel(self, *args: object) -> None:
        pass

    def on_direct(self, *args: object) -> None:
        pass

    async def join(self, addresses: Sequence[str], default_port: int, *, replay: bool) -> int:
        contacted = 0
        for text in addresses:
            try:
                parse_address(text, default_port)
            except ValueError:
                continue
            contacted += 1
        return contacted


async def _leave() -> None:
    pass


async def _pinger(server: Server) -> bool:
    return True


def _election_status() -> ElectionStatus:
    return ElectionStatus("electing", "no leader yet", 2.0)


def _clock() -> float:
    return _cores.NOW


async def _monitor(request: Any) -> Any:
    # The log is the process's own: nothing a request can reach is read.
    return
    yield


def _describe() -> Any:
    from controlplane.v1 import membership_pb2

    return membership_pb2.GetInfoResponse()


def _servicers(layer: Membership) -> list[tuple[PublicService, object]]:
    runtime: Any = OfflineRuntime(layer)
    membership = MembershipService(layer, runtime, EventHub(), default_port=7946, leave=_leave)
    leader = LeaderRpcs(layer, lambda: None, EventHub(), _election_status)
    pools = PoolRegistry(_clock, pinger=_pinger, rng=random.Random(0))
    heartbeats = HeartbeatRpcs(
        layer,
        HeartbeatTracker(random.Random(0)),
        _clock,
        lambda: None,
        distances=layer.distances_from,
    )
    rings = RingService(RingDirectory(layer.name), layer, lambda channel, data: None, _clock)
    # No handlers: a fuzzed query never starts a process.
    queries = QueryRpcs(QueryDriver(runtime, QueryHandlers({}, 1.0, layer.name)))
    return [
        (MEMBERSHIP, MembershipServicer(membership, leader, _describe, _monitor, queries)),
        (SERVER_POOL, ServerPoolServicer(ServerPoolRpcs(pools, layer.distances_from), heartbeats)),
        (RING, RingServicer(rings)),
    ]


class Rpcs:
    """Every RPC of the three services: (name, request class, guarded handler, streaming)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.layer = _cores.membership()
        self.table: list[tuple[str, Any, Any, bool]] = []
        for service, servicer in _servicers(self.layer):
            for method in service.file.services_by_name[service.name].methods:
                self.table.append(
                    (
                        f"{service.name}/{method.name}",
                        GetMessageClass(method.input_type),
                        guard(
                            f"/{service.full_name}/{method.name}", getattr(servicer, method.name)
                        ),
                        method.server_streaming,
                    )
                )


_RPCS: Rpcs | None = None


def _rpcs() -> Rpcs:
    global _RPCS
    if _RPCS is None:
        _RPCS = Rpcs()
    return _RPCS


async def _call(handler: Any, request: Any, streaming: bool) -> None:
    context = FakeContext()
    if not streaming:
        await handler(request, context)
        return
    stream = handler(request, context)
    if not hasattr(stream, "__anext__"):  # a stream written with context.write()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stream, STREAM_WAIT)
        return
    try:
        await asyncio.wait_for(anext(stream), STREAM_WAIT)
    except (TimeoutError, StopAsyncIteration):
        pass
    finally:
        await stream.aclose()


def target(data: bytes) -> None:
    if not data:
        return
    rpcs = _rpcs()
    name, request_class, handler, streaming = rpcs.table[data[0] % len(rpcs.table)]
    try:
        request = request_class.FromString(data[1:])
    except (DecodeError, RuntimeError, ValueError):
        return  # gRPC refuses it before any handler runs
    try:
        rpcs.loop.run_until_complete(_call(handler, request, streaming))
    except Aborted as aborted:
        if aborted.code in BAD_CODES:
            raise BadStatus(f"{name} answered {aborted}") from None


def seeds() -> list[bytes]:
    from controlplane.v1 import membership_pb2, ring_pb2, server_pool_pb2

    rpcs = _rpcs()
    index = {name: i for i, (name, _, _, _) in enumerate(rpcs.table)}
    examples = {
        "Membership/ListMembers": membership_pb2.ListMembersRequest(
            name_pattern="fuzz.*", page_size=2
        ),
        "Membership/Join": membership_pb2.JoinRequest(addresses=["10.0.0.2:7946", "[::1]"]),
        "Membership/UpdateTags": membership_pb2.UpdateTagsRequest(set={"zone": "b"}),
        "Membership/FireUserEvent": membership_pb2.FireUserEventRequest(
            name="deploy", payload=b"v2"
        ),
        "Membership/ForceLeave": membership_pb2.ForceLeaveRequest(name="node-9"),
        "Membership/GetCoordinate": membership_pb2.GetCoordinateRequest(node="node-9"),
        "ServerPool/FindServer": server_pool_pb2.FindServerRequest(pool="db", near="_agent"),
        "ServerPool/ListServers": server_pool_pb2.ListServersRequest(pool="db", near="node-9"),
        "Membership/Query": membership_pb2.QueryRequest(
            name="uptime", payload=b"x", filter_tags={"role": "^web$"}, request_ack=True
        ),
        "Membership/WatchQueries": membership_pb2.WatchQueriesRequest(names=["uptime"]),
        "Membership/RespondQuery": membership_pb2.RespondQueryRequest(id=1, payload=b"up"),
        "Ring/AddNode": ring_pb2.AddNodeRequest(ring="web", address="10.0.0.5", port=80),
        "Ring/GetNode": ring_pb2.GetNodeRequest(ring="web", key="user-1"),
        "ServerPool/RefreshServerLists": server_pool_pb2.RefreshServerListsRequest(
            pool="db", servers=[server_pool_pb2.Server(name="a", address="10.0.0.7:9000")]
        ),
        "ServerPool/AddServer": server_pool_pb2.AddServerRequest(
            pool="db", server=server_pool_pb2.Server(name="b", address="10.0.0.8:9000")
        ),
        "ServerPool/RemoveServer": server_pool_pb2.RemoveServerRequest(
            pool="db", address="10.0.0.7:9000"
        ),
        "ServerPool/Heartbeat": server_pool_pb2.HeartbeatRequest(
            client_id="client-1", api_version=server_pool_pb2.ApiVersion(major=1), near="_agent"
        ),
    }
    out = [bytes((i,)) for i in range(len(rpcs.table))]
    out += [bytes((index[name],)) + r.SerializeToString() for name, r in examples.items()]
    return out


if __name__ == "__main__":
    # The guard logs every INTERNAL with its traceback; the harness reports them itself.
    logging.disable(logging.CRITICAL)
    main(NAME, target, (), seeds())
