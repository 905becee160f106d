"""The ServerPool service: named server pools held by the agent for its callers.

Each pool is the pure `controlplane.pool.ServerPool` (Consul's and Nomad's
semantics) plus what only an agent can do for it: ping servers with the standard
health check when rebalancing (the pool plans, this shell pings, the pool takes
the results as data), rebalance on the pool's own interval, and forget
pools nobody has used for `idle_expiry` seconds (soft state, like a cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf.duration_pb2 import Duration

from controlplane.client.health import HealthStatus, check_health_async
from controlplane.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from controlplane.errors import Unavailable as UnavailableError
from controlplane.gossip.names import name_or_default, valid_name
from controlplane.membership.layer import NEAR_AGENT
from controlplane.pool import (
    ApiVersion,
    FailureVerdict,
    PoolConfig,
    PoolInputError,
    RebalanceResult,
    Server,
    ServerPool,
    nearest_first,
    parse_address,
)
from controlplane.v1 import server_pool_pb2 as pb

log = logging.getLogger("controlplane.pool")

MAX_SERVERS_PER_LIST = 1024
# A bound on soft state: each pool is small, but callers choose the names.
MAX_POOLS = 1024
# Pools unused for this long are forgotten; callers refresh them with each heartbeat.
DEFAULT_IDLE_EXPIRY = 600.0
# A rebalance ping is a health check; a server that cannot answer within a second
# is not the one to put at the head of the list.
PING_TIMEOUT = 1.0
MAINTENANCE_INTERVAL = 1.0
# The API version this agent serves; pools filter against it unless told otherwise.
AGENT_API_VERSION = ApiVersion(1, 0)

AsyncPinger = Callable[[Server], Awaitable[bool]]


def pool_name(raw: str) -> str:
    return name_or_default(raw, "pool")


def api_version_from_proto(version: pb.ApiVersion, present: bool) -> ApiVersion | None:
    return ApiVersion(version.major, version.minor) if present else None


def datacenter_from_request(value: str) -> str | None:
    """A datacenter name from a request ("" is none), by the members' naming rule,
    as the agent's datacenter setting."""
    if not value:
        return None
    if not valid_name(value):
        raise InvalidArgument.for_field(
            "datacenter", f"must be 1 to 128 characters of [A-Za-z0-9._-], got {value[:80]!r}"
        )
    return value


def server_from_proto(proto: pb.Server, field: str) -> Server:
    try:
        return Server(
            name=proto.name or proto.address,
            address=proto.address,
            api_version=api_version_from_proto(proto.api_version, proto.HasField("api_version")),
            draining=proto.draining,
            datacenter=proto.datacenter,
        )
    except PoolInputError as error:
        raise InvalidArgument.for_field(f"{field}.{error.field}", str(error)) from None


def servers_from_proto(protos: Sequence[pb.Server], field: str) -> list[Server]:
    if len(protos) > MAX_SERVERS_PER_LIST:
        raise InvalidArgument.for_field(
            field, f"must hold at most {MAX_SERVERS_PER_LIST} servers, got {len(protos)}"
        )
    return [server_from_proto(proto, f"{field}[{i}]") for i, proto in enumerate(protos)]


def server_to_proto(server: Server) -> pb.Server:
    proto = pb.Server(
        name=server.name,
        address=server.address,
        draining=server.draining,
        datacenter=server.datacenter,
    )
    if server.api_version is not None:
        proto.api_version.major = server.api_version.major
        proto.api_version.minor = server.api_version.minor
    return proto


def seconds_to_duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


async def health_ping(server: Server) -> bool:
    """A rebalance ping in plaintext: the server's standard health check says SERVING."""
    return await _ping(grpc.aio.insecure_channel(server.address))


async def _ping(channel: grpc.aio.Channel) -> bool:
    async with channel:
        try:
            status = await check_health_async(channel, timeout=PING_TIMEOUT)
        except grpc.aio.AioRpcError:
            return False
    return status == HealthStatus.SERVING


def tls_health_ping(
    credentials: Callable[[], grpc.ChannelCredentials | None],
    options: Sequence[tuple[str, str]] = (),
) -> AsyncPinger:
    """Rebalance pings with the agent's outgoing credentials, read at each ping so
    that a TLS reload applies to the next one; None from `credentials` is plaintext."""

    async def ping(server: Server) -> bool:
        current = credentials()
        if current is None:
            return await health_ping(server)
        return await _ping(grpc.aio.secure_channel(server.address, current, options=options))

    return ping


@dataclass
class PoolEntry:
    """A named pool and the bookkeeping the agent keeps around it."""

    name: str
    pool: ServerPool
    last_used: float
    next_rebalance_at: float
    rebalancing: bool = False


class PoolRegistry:
    """The agent's named pools: creation, lookup, expiry and periodic rebalancing."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        pinger: AsyncPinger = health_ping,
        idle_expiry: float = DEFAULT_IDLE_EXPIRY,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._pinger = pinger
        self._idle_expiry = idle_expiry
        self._rng = rng or random.Random()
        self._pools: dict[str, PoolEntry] = {}
        self._task: asyncio.Task[None] | None = None
        # Set when a pool is created: without pools the maintenance task sleeps on it
        # instead of waking every second (an idle agent's CPU is its wake-ups).
        self._pool_created = asyncio.Event()

    def now(self) -> float:
        return self._clock()

    @property
    def pool_count(self) -> int:
        return len(self._pools)

    def get(self, name: str) -> PoolEntry:
        entry = self._pools.get(name)
        if entry is None:
            raise NotFound(
                f"pool {name!r} does not exist; RefreshServerLists or SetBackupServers creates it"
            )
        entry.last_used = self._clock()
        return entry

    def get_or_create(
        self, name: str, api_version: ApiVersion | None, datacenter: str | None = None
    ) -> PoolEntry:
        entry = self._pools.get(name)
        now = self._clock()
        if entry is not None:
            wanted = api_version or entry.pool.config.client_api_version
            if wanted != entry.pool.config.client_api_version:
                raise FailedPrecondition(
                    f"pool {name!r} filters for API {entry.pool.config.client_api_version}, "
                    f"not {wanted}; use another pool name per API version"
                )
            if datacenter and datacenter != entry.pool.config.datacenter:
                raise FailedPrecondition(
                    f"pool {name!r} was created for datacenter"
                    f" {entry.pool.config.datacenter!r}, not {datacenter!r};"
                    " use another pool name per datacenter"
                )
            entry.last_used = now
            return entry
        if len(self._pools) >= MAX_POOLS:
            raise ResourceExhausted(f"at most {MAX_POOLS} pools per agent; reuse pool names")
        config = PoolConfig(
            client_api_version=api_version or AGENT_API_VERSION, datacenter=datacenter or ""
        )
        pool = ServerPool(config, rng=random.Random(self._rng.getrandbits(64)))
        entry = PoolEntry(name, pool, now, now + pool.next_rebalance_interval())
        self._pools[name] = entry
        self._pool_created.set()
        return entry

    def names(self) -> list[str]:
        return sorted(self._pools)

    async def rebalance(self, entry: PoolEntry) -> RebalanceResult:
        """Pings in the pool's planned order until one server answers, then hands the
        results to the pool. The pool may change while the pings are in flight (a
        heartbeat); `apply_pings` drops the results of servers it no longer holds."""
        plan = entry.pool.plan_rebalance(self._clock())
        results: list[tuple[Server, bool]] = []
        entry.rebalancing = True
        try:
            for server in plan.ping_order:
                answered = bool(await self._pinger(server))
                results.append((server, answered))
                if answered:
                    break
        finally:
            entry.rebalancing = False
        result = entry.pool.apply_pings(plan, results, self._clock())
        entry.next_rebalance_at = self._clock() + entry.pool.next_rebalance_interval()
        return result

    def start(self) -> None:
        self._task = asyncio.create_task(self._maintain())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _maintain(self) -> None:
        while True:
            if not self._pools:
                self._pool_created.clear()
                await self._pool_created.wait()
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            now = self._clock()
            for name, entry in list(self._pools.items()):
                if now - entry.last_used > self._idle_expiry:
                    del self._pools[name]
                    log.debug("pool %s expired after %.0fs idle", name, self._idle_expiry)
                elif now >= entry.next_rebalance_at and not entry.rebalancing:
                    try:
                        await self.rebalance(entry)
                    except Exception:
                        log.exception("periodic rebalance of pool %s failed", name)


DistanceSource = Callable[[str, Iterable[str]], Mapping[str, float]]
"""Estimated round trips from a member (``near``) to the named servers, in seconds,
for the servers whose distance is known (``Membership.distances_from``); raises
InvalidArgument for a bad ``near``."""


def near_distances(
    source: DistanceSource | None, near: str, names: Iterable[str]
) -> Mapping[str, float]:
    """The ``near`` field of a request: checked, then the distances from that member
    (empty without a coordinate source, so the order stays as it was)."""
    check_near(near)
    return {} if source is None else source(near, names)


def check_near(near: str) -> None:
    """The ``near`` field of a request: a member name or ``_agent``."""
    if near != NEAR_AGENT and not valid_name(near):
        raise InvalidArgument.for_field(
            "near", f"must be a member name or {NEAR_AGENT!r}, got {near!r:.160}"
        )


class ServerPoolRpcs:
    """The pool RPCs of the ServerPool service (Heartbeat lives with membership)."""

    def __init__(self, registry: PoolRegistry, distances: DistanceSource | None = None) -> None:
        self._registry = registry
        self._distances = distances

    def _near(self, near: str, servers: Iterable[Server]) -> Mapping[str, float]:
        return near_distances(self._distances, near, [server.name for server in servers])

    async def RefreshServerLists(
        self, request: pb.RefreshServerListsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RefreshServerListsResponse:
        name = pool_name(request.pool)
        servers = servers_from_proto(request.servers, "servers")
        api_version = api_version_from_proto(request.api_version, request.HasField("api_version"))
        leader = request.leader_address or None
        if leader is not None:
            try:
                parse_address(leader, field="leader_address")
            except PoolInputError as error:
                raise InvalidArgument.for_field("leader_address", str(error)) from None
        datacenter = datacenter_from_request(request.datacenter)
        entry = self._registry.get_or_create(name, api_version, datacenter)
        result = entry.pool.refresh_server_lists(
            servers, request.num_nodes, leader, self._registry.now()
        )
        return pb.RefreshServerListsResponse(
            servers=[server_to_proto(s) for s in entry.pool.primary_servers()],
            filtered_out=[server_to_proto(s) for s in result.incompatible],
        )

    async def SetBackupServers(
        self, request: pb.SetBackupServersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SetBackupServersResponse:
        name = pool_name(request.pool)
        servers = servers_from_proto(request.servers, "servers")
        entry = self._registry.get_or_create(name, None)
        entry.pool.set_backup_servers(servers)
        return pb.SetBackupServersResponse(num_backups=len(entry.pool.backup_servers()))

    async def AddServer(
        self, request: pb.AddServerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AddServerResponse:
        name = pool_name(request.pool)
        if not request.HasField("server") or not request.server.address:
            raise InvalidArgument.for_field("server.address", "must be host:port, got ''")
        server = server_from_proto(request.server, "server")
        api_version = api_version_from_proto(request.api_version, request.HasField("api_version"))
        entry = self._registry.get_or_create(name, api_version)
        primaries = entry.pool.primary_servers()
        known = any(s.name == server.name for s in primaries)
        if not known and len(primaries) >= MAX_SERVERS_PER_LIST:
            raise ResourceExhausted(
                f"pool {entry.name!r} holds {len(primaries)} primaries, the most allowed"
                f" ({MAX_SERVERS_PER_LIST}); remove one first"
            )
        added = entry.pool.add_server(server)
        return pb.AddServerResponse(
            known=known and added,
            incompatible=not added,
            servers=[server_to_proto(s) for s in entry.pool.primary_servers()],
        )

    async def RemoveServer(
        self, request: pb.RemoveServerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RemoveServerResponse:
        entry = self._registry.get(pool_name(request.pool))
        try:
            parse_address(request.address, field="address")
        except PoolInputError as error:
            raise InvalidArgument.for_field("address", str(error)) from None
        server = next((s for s in entry.pool.servers() if s.address == request.address), None)
        removed = server is not None and entry.pool.remove_server(server)
        return pb.RemoveServerResponse(removed=removed, num_servers=entry.pool.num_servers)

    async def FindServer(
        self, request: pb.FindServerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FindServerResponse:
        entry = self._registry.get(pool_name(request.pool))
        datacenter = datacenter_from_request(request.datacenter)
        if request.near:
            distances = self._near(request.near, entry.pool.servers())
            server = entry.pool.find_nearest(self._registry.now(), distances, datacenter)
        else:
            server = entry.pool.find_server(self._registry.now(), datacenter)
        if server is None:
            where = f" in datacenter {datacenter!r}" if datacenter else ""
            raise UnavailableError(
                f"pool {entry.name!r} has no usable server{where} "
                f"({entry.pool.num_servers} known, all ejected or none given)"
            )
        primaries = {s.name for s in entry.pool.primary_servers()}
        return pb.FindServerResponse(
            server=server_to_proto(server), is_backup=server.name not in primaries
        )

    async def NotifyFailedServer(
        self, request: pb.NotifyFailedServerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NotifyFailedServerResponse:
        entry = self._registry.get(pool_name(request.pool))
        if not request.address:
            raise InvalidArgument.for_field("address", "must be host:port, got ''")
        server = next((s for s in entry.pool.servers() if s.address == request.address), None)
        if server is None:
            raise NotFound(f"pool {entry.name!r} has no server at {request.address!r}")
        verdict = entry.pool.notify_failed_server(server, self._registry.now())
        return pb.NotifyFailedServerResponse(
            rotated=verdict in (FailureVerdict.ROTATED, FailureVerdict.EJECTED),
            ejected=verdict is FailureVerdict.EJECTED,
        )

    async def RebalanceServers(
        self, request: pb.RebalanceServersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RebalanceServersResponse:
        entry = self._registry.get(pool_name(request.pool))
        result = await self._registry.rebalance(entry)
        return pb.RebalanceServersResponse(
            servers=[server_to_proto(s) for s in entry.pool.primary_servers()],
            offline=result.offline,
            next_rebalance=seconds_to_duration(entry.pool.next_rebalance_interval()),
        )

    async def ListServers(
        self, request: pb.ListServersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListServersResponse:
        entry = self._registry.get(pool_name(request.pool))
        now = self._registry.now()
        primaries, backups = entry.pool.primary_servers(), entry.pool.backup_servers()
        if request.near:
            distances = self._near(request.near, entry.pool.servers())
            primaries = tuple(nearest_first(primaries, distances))
            backups = tuple(nearest_first(backups, distances))
        return pb.ListServersResponse(
            primaries=[server_to_proto(s) for s in primaries],
            backups=[server_to_proto(s) for s in backups],
            ejected=[server_to_proto(s) for s in entry.pool.ejected_servers(now)],
            offline=entry.pool.is_offline,
            num_nodes=entry.pool.num_nodes,
            leader_address=entry.pool.leader_address or "",
        )
