"""The asyncio client: `AsyncClient`, its resumable watches and `AsyncLiveRing`.

`AsyncClient` owns one `grpc.aio` channel per agent address, the failover loop
around every unary call, the background maintenance task (heartbeat at the
interval the server asks for, periodic rebalance, re-discovery) and the watches
that resume on another agent after a failure. See docs/client.md. Create it
inside a running event loop.

This is the one hand-written source of both clients: `tools/unasync.py` generates
the blocking `Client` (`sync.py`) from it, replacing `_async_backend` (tasks,
`asyncio` events) with `_sync_backend` (threads) and dropping `async`/`await`.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc
import grpc.aio

from controlplane.client import requests
from controlplane.client._async_backend import (
    CANCELLED,
    Background,
    Event,
    Mutex,
    QueryHandler,
    Stream,
    run_blocking,
    sleep,
)
from controlplane.client.auth import async_channel
from controlplane.client.common import (
    CHANNEL_OPTIONS,
    HEARTBEAT_RETRY,
    PING_TIMEOUT,
    ClientOptions,
    Failover,
    classify,
    exhausted,
    heartbeat_interval,
    literal_seeds,
)
from controlplane.client.health import HealthStatus, check_health_async
from controlplane.client.idempotency import is_idempotent
from controlplane.client.ringview import RingState
from controlplane.client.views import (
    EventUpdate,
    LeaderUpdate,
    MembersUpdate,
    RingUpdate,
    events_handler,
    leader_handler,
    members_handler,
    ring_handler,
)
from controlplane.errors import (
    ControlPlaneError,
    DeadlineExceeded,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
)
from controlplane.pool import Server
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

__all__ = ["AsyncClient", "AsyncLiveRing", "AsyncWatch"]

T = TypeVar("T")
M = TypeVar("M")
U = TypeVar("U")

# A watch cut off as too slow this many times in a row, with no message in between,
# gives up: the reader cannot keep up with the agent at all.
MAX_CUTOFFS_IN_A_ROW = 8
# The first pause before subscribing again after a cut-off; it doubles, up to 1 s.
RESUBSCRIBE_PAUSE = 0.05


@dataclass(frozen=True, slots=True)
class _Stubs:
    channel: grpc.aio.Channel
    membership: membership_pb2_grpc.MembershipAsyncStub
    server_pool: server_pool_pb2_grpc.ServerPoolAsyncStub
    ring: ring_pb2_grpc.RingAsyncStub
    keyring: keyring_pb2_grpc.KeyringAsyncStub


class AsyncClient:
    """An asyncio controlplane client with failover across agents.

    >>> async with AsyncClient(["127.0.0.1:7946"]) as client:   # doctest: +SKIP
    ...     names = [m.name for m in await client.members()]

    Every unary call has a deadline (`options.timeout`, or `timeout=` per call)
    covering all its attempts. Idempotent calls that fail with UNAVAILABLE or
    DEADLINE_EXCEEDED are retried on the next server, at most once per known
    server; other calls raise `Unavailable` saying they may have been applied.
    Errors are `controlplane.errors` exceptions, never `grpc.RpcError`.
    """

    def __init__(
        self,
        seeds: Sequence[str] | str,
        options: ClientOptions | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        options = options or ClientOptions()
        if timeout is not None:
            options = dataclasses.replace(options, timeout=timeout)
        self._options = options
        # Read once: every channel to every agent shares these credentials.
        self._credentials = options.channel_credentials()
        self._failover = Failover([seeds] if isinstance(seeds, str) else seeds, options)
        # IP literals are known at once; host names are resolved by the first call
        # that needs a server (DNS blocks: the asyncio client resolves off its loop).
        self._failover.rediscover(literal_seeds(self._failover.seeds))
        self._conns: dict[str, _Stubs] = {}
        self._conns_lock = Mutex()
        self._stop = Event()
        self._closed = False
        self._watches: set[AsyncWatch[Any, Any]] = set()
        self._last_heartbeat: server_pool_pb2.HeartbeatResponse | None = None
        # Every heartbeat of this client says the same; built once, never changed.
        version = self._options.api_version
        self._heartbeat_request = requests.heartbeat(
            self._options.client_id, version.major, version.minor, self._options.metadata
        )
        self._maintenance: Background | None = None
        if options.heartbeat:
            self._maintenance = Background(self._maintain, "controlplane-client-maintenance")

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Stops background maintenance, cancels watches, closes every channel."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for watch in list(self._watches):
            watch.close()
        if self._maintenance is not None:
            await self._maintenance.stop()
        with self._conns_lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            await conn.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ pool view

    @property
    def options(self) -> ClientOptions:
        return self._options

    @property
    def current_server(self) -> str | None:
        """Address of the agent that answered the last successful call."""
        current = self._failover.current
        return current.address if current is not None else None

    def servers(self) -> tuple[Server, ...]:
        """Every server the client knows, in the pool's stored order."""
        return self._failover.servers()

    def backups(self) -> tuple[Server, ...]:
        """The pool's backup servers: those configured and, with a `datacenter`,
        the other datacenters' servers the last heartbeat listed."""
        return self._failover.backups()

    def set_backups(self, addresses: Sequence[str]) -> int:
        """Replaces the backup agents (`host:port`), tried only when no agent the
        seeds and heartbeats name answers; returns how many there are now."""
        return self._failover.set_backups(addresses)

    @property
    def last_heartbeat(self) -> server_pool_pb2.HeartbeatResponse | None:
        return self._last_heartbeat

    # ------------------------------------------------------------------ Membership

    async def members(
        self,
        *,
        statuses: Iterable[membership_pb2.MemberStatus.ValueType] = (),
        tags: Mapping[str, str] | None = None,
        name_pattern: str = "",
        timeout: float | None = None,
    ) -> list[membership_pb2.Member]:
        """Members the answering agent knows, filtered, sorted by name."""
        request = requests.list_members(statuses, tags, name_pattern)
        response = await self._unary(
            "Membership/ListMembers",
            lambda s, t: s.membership.ListMembers(request, timeout=t),
            timeout,
        )
        return list(response.members)

    async def members_page(
        self,
        *,
        page_size: int = 1000,
        page_token: str = "",
        statuses: Iterable[membership_pb2.MemberStatus.ValueType] = (),
        tags: Mapping[str, str] | None = None,
        name_pattern: str = "",
        timeout: float | None = None,
    ) -> membership_pb2.ListMembersResponse:
        """One page of the members the answering agent knows, filtered, sorted by name.

        Pass the answer's `next_page_token` as `page_token` (with the same filters) for
        the next page; it is empty on the last page. A token names the last member
        returned, so it works on any agent, after a failover too. At most 1000 members
        per page; a page may hold fewer."""
        request = requests.list_members(statuses, tags, name_pattern)
        request.page_size = page_size
        request.page_token = page_token
        return await self._unary(
            "Membership/ListMembers",
            lambda s, t: s.membership.ListMembers(request, timeout=t),
            timeout,
        )

    async def local_member(self, *, timeout: float | None = None) -> membership_pb2.Member:
        """The answering agent as a member."""
        request = membership_pb2.GetLocalMemberRequest()
        response = await self._unary(
            "Membership/GetLocalMember",
            lambda s, t: s.membership.GetLocalMember(request, timeout=t),
            timeout,
        )
        return response.member

    async def coordinate(
        self,
        node: str = "",
        *,
        timeout: float | None = None,
    ) -> membership_pb2.GetCoordinateResponse:
        """A member's network coordinate as the answering agent knows it (``node``
        empty: the agent's own); NotFound while it is not known."""
        request = membership_pb2.GetCoordinateRequest(node=node)
        return await self._unary(
            "Membership/GetCoordinate",
            lambda s, t: s.membership.GetCoordinate(request, timeout=t),
            timeout,
        )

    async def join(
        self, addresses: Sequence[str], *, replay_events: bool = False, timeout: float | None = None
    ) -> int:
        """Asks the answering agent to join these addresses; returns how many answered."""
        request = membership_pb2.JoinRequest(addresses=list(addresses), replay_events=replay_events)
        response = await self._unary(
            "Membership/Join", lambda s, t: s.membership.Join(request, timeout=t), timeout
        )
        return response.contacted

    async def leave(self, *, timeout: float | None = None) -> None:
        """Makes the answering agent leave the cluster gracefully."""
        request = membership_pb2.LeaveRequest()
        await self._unary(
            "Membership/Leave", lambda s, t: s.membership.Leave(request, timeout=t), timeout
        )

    async def update_tags(
        self,
        *,
        set: Mapping[str, str] | None = None,
        delete: Iterable[str] = (),
        timeout: float | None = None,
    ) -> membership_pb2.Member:
        """Sets then deletes tags of the answering agent; returns it as a member."""
        request = requests.update_tags(set, delete)
        response = await self._unary(
            "Membership/UpdateTags",
            lambda s, t: s.membership.UpdateTags(request, timeout=t),
            timeout,
        )
        return response.member

    async def force_leave(
        self,
        name: str,
        *,
        prune: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Moves a failed member to left (with `prune`, erases it at once)."""
        request = membership_pb2.ForceLeaveRequest(name=name, prune=prune)
        await self._unary(
            "Membership/ForceLeave",
            lambda s, t: s.membership.ForceLeave(request, timeout=t),
            timeout,
        )

    async def fire_event(
        self,
        name: str,
        payload: bytes = b"",
        *,
        coalesce: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Fires a user event cluster-wide; returns its Lamport time."""
        request = membership_pb2.FireUserEventRequest(name=name, payload=payload, coalesce=coalesce)
        response = await self._unary(
            "Membership/FireUserEvent",
            lambda s, t: s.membership.FireUserEvent(request, timeout=t),
            timeout,
        )
        return response.lamport_time

    async def leader(self, *, timeout: float | None = None) -> membership_pb2.Leader | None:
        """The leader as the answering agent sees it, or None."""
        response = await self.leader_status(timeout=timeout)
        return response.leader if response.HasField("leader") else None

    async def leader_status(
        self,
        *,
        timeout: float | None = None,
    ) -> membership_pb2.GetLeaderResponse:
        """The whole answer: the leader, or why there is none and when one is expected."""
        request = membership_pb2.GetLeaderRequest()
        return await self._unary(
            "Membership/GetLeader", lambda s, t: s.membership.GetLeader(request, timeout=t), timeout
        )

    async def leader_history(
        self,
        *,
        timeout: float | None = None,
    ) -> list[membership_pb2.LeaderChange]:
        """The last changes of leader the answering agent saw (at most 100, oldest
        first), each with its time, epoch and cause."""
        request = membership_pb2.GetLeaderHistoryRequest()
        response = await self._unary(
            "Membership/GetLeaderHistory",
            lambda s, t: s.membership.GetLeaderHistory(request, timeout=t),
            timeout,
        )
        return list(response.changes)

    async def info(self, *, timeout: float | None = None) -> membership_pb2.GetInfoResponse:
        """The answering agent described (`serf info`): its runtime, member counts,
        clocks, health score, encryption and TLS, election and rings."""
        request = membership_pb2.GetInfoRequest()
        return await self._unary(
            "Membership/GetInfo", lambda s, t: s.membership.GetInfo(request, timeout=t), timeout
        )

    async def monitor(self, level: str = "info") -> AsyncIterator[membership_pb2.MonitorResponse]:
        """One agent's log lines at `level` and above (`serf monitor`), until the
        caller stops iterating. The lines are that agent's: the stream does not move
        to another agent, and a failure ends it with the mapped error."""
        request = membership_pb2.MonitorRequest(log_level=level)
        server = await self._stream_server("Membership/Monitor")
        call = self._stubs(server.address).membership.Monitor(request)
        async for response in self._one_agent_stream("Membership/Monitor", server, call):  # noqa: UP028, RUF100
            yield response

    async def query(
        self,
        name: str,
        payload: bytes = b"",
        *,
        filter_nodes: Sequence[str] = (),
        filter_tags: Mapping[str, str] | None = None,
        request_ack: bool = False,
        relay_factor: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[membership_pb2.QueryResponse]:
        """Asks the members a query (`serf query`) through one agent and yields
        their acks and responses as they arrive, then a last message with `done`
        set when `timeout` (default: Serf's, which grows with the cluster) passed.
        Each member acks (with `request_ack`) and responds at most once; only the
        members named in `filter_nodes` and whose tags match every RE2 expression
        of `filter_tags` answer. Never repeated on another agent (it would run the
        members' handlers twice): a failure ends the stream with the mapped error."""
        request = membership_pb2.QueryRequest(
            name=name,
            payload=payload,
            filter_nodes=filter_nodes,
            filter_tags=filter_tags or {},
            request_ack=request_ack,
            relay_factor=relay_factor,
        )
        if timeout is not None:
            request.timeout.FromNanoseconds(round(timeout * 1e9))
        server = await self._stream_server("Membership/Query")
        call = self._stubs(server.address).membership.Query(request)
        async for response in self._one_agent_stream("Membership/Query", server, call):  # noqa: UP028, RUF100
            yield response

    async def answer_queries(self, handler: QueryHandler, names: Sequence[str] = ()) -> None:
        """Answers the queries one agent receives (all, or those named in `names`),
        as Serf's RPC clients do: `handler` gets each query and returns the response
        (at most 1024 bytes) or None for none. Queries are handled one at a time,
        until the caller cancels, the handler raises, or the agent goes away (the
        mapped error). A query answered already (by the agent's own handler, another
        client) or past its timeout is skipped."""
        request = membership_pb2.WatchQueriesRequest(names=names)
        # Responses must reach the agent that received the queries: both calls go to it.
        server = await self._stream_server("Membership/WatchQueries")
        call = self._stubs(server.address).membership.WatchQueries(request)
        async for query in self._one_agent_stream("Membership/WatchQueries", server, call):
            answer = await handler(query)
            if answer is None:
                continue
            respond = membership_pb2.RespondQueryRequest(id=query.id, payload=answer)
            try:
                await self._stubs(server.address).membership.RespondQuery(
                    respond, timeout=self._options.timeout
                )
            except grpc.RpcError as error:
                verdict = classify(error, "Membership/RespondQuery", server, deadline_passed=False)
                if not isinstance(verdict.error, FailedPrecondition):
                    raise verdict.error from None

    async def _stream_server(self, method: str) -> Server:
        """The agent a one-agent stream goes to."""
        self._check_open()
        server = await self._next_server([])
        if server is None:
            raise exhausted(method, [], None)
        return server

    async def _one_agent_stream(
        self,
        method: str,
        server: Server,
        call: Stream[T],
    ) -> AsyncIterator[T]:
        """The messages of a stream from `server`, never moved to another agent; a
        failure ends it with the mapped error."""
        try:
            # The blocking client's copy must catch the error too: no `yield from`.
            async for response in call:  # noqa: UP028, RUF100
                yield response
        except grpc.RpcError as error:
            raise classify(error, method, server, deadline_passed=False).error from None
        finally:
            call.cancel()

    # ------------------------------------------------------------------ ServerPool

    async def heartbeat(self, *, timeout: float | None = None) -> server_pool_pb2.HeartbeatResponse:
        """Heartbeats now and feeds the answer's server list into the client's pool."""
        request = self._heartbeat_request
        response = await self._unary(
            "ServerPool/Heartbeat",
            lambda s, t: s.server_pool.Heartbeat(request, timeout=t),
            timeout,
        )
        self._failover.refresh(response)
        self._last_heartbeat = response
        return response

    async def find_server(
        self, pool: str = "", *, near: str = "", timeout: float | None = None
    ) -> server_pool_pb2.FindServerResponse:
        """The head of a pool held by the answering agent; with ``near`` (a member
        name, or ``"_agent"``), the usable server nearest to that member."""
        request = server_pool_pb2.FindServerRequest(pool=pool, near=near)
        return await self._unary(
            "ServerPool/FindServer",
            lambda s, t: s.server_pool.FindServer(request, timeout=t),
            timeout,
        )

    async def list_servers(
        self, pool: str = "", *, near: str = "", timeout: float | None = None
    ) -> server_pool_pb2.ListServersResponse:
        """A pool held by the answering agent; with ``near``, nearest first."""
        request = server_pool_pb2.ListServersRequest(pool=pool, near=near)
        return await self._unary(
            "ServerPool/ListServers",
            lambda s, t: s.server_pool.ListServers(request, timeout=t),
            timeout,
        )

    async def list_clients(
        self, *, timeout: float | None = None
    ) -> list[server_pool_pb2.HeartbeatClient]:
        request = server_pool_pb2.ListClientsRequest()
        response = await self._unary(
            "ServerPool/ListClients",
            lambda s, t: s.server_pool.ListClients(request, timeout=t),
            timeout,
        )
        return list(response.clients)

    async def list_clients_page(
        self, *, page_size: int = 1000, page_token: str = "", timeout: float | None = None
    ) -> server_pool_pb2.ListClientsResponse:
        """One page of the clients heartbeating to the answering agent, sorted by id;
        pass the answer's `next_page_token` as `page_token` for the next page (empty on
        the last one). At most 1000 clients per page; a page may hold fewer."""
        request = server_pool_pb2.ListClientsRequest(page_size=page_size, page_token=page_token)
        return await self._unary(
            "ServerPool/ListClients",
            lambda s, t: s.server_pool.ListClients(request, timeout=t),
            timeout,
        )

    async def refresh_server_lists(
        self, request: server_pool_pb2.RefreshServerListsRequest, *, timeout: float | None = None
    ) -> server_pool_pb2.RefreshServerListsResponse:
        return await self._unary(
            "ServerPool/RefreshServerLists",
            lambda s, t: s.server_pool.RefreshServerLists(request, timeout=t),
            timeout,
        )

    async def set_backup_servers(
        self,
        servers: Sequence[server_pool_pb2.Server],
        pool: str = "",
        *,
        timeout: float | None = None,
    ) -> int:
        request = server_pool_pb2.SetBackupServersRequest(pool=pool, servers=list(servers))
        response = await self._unary(
            "ServerPool/SetBackupServers",
            lambda s, t: s.server_pool.SetBackupServers(request, timeout=t),
            timeout,
        )
        return response.num_backups

    async def add_server(
        self,
        server: server_pool_pb2.Server,
        pool: str = "",
        *,
        api_version: server_pool_pb2.ApiVersion | None = None,
        timeout: float | None = None,
    ) -> server_pool_pb2.AddServerResponse:
        """Adds one primary at the end of an agent's pool, or updates a known one
        (same name) in place; `incompatible` in the answer says it was refused."""
        request = server_pool_pb2.AddServerRequest(pool=pool, server=server)
        if api_version is not None:
            request.api_version.CopyFrom(api_version)
        return await self._unary(
            "ServerPool/AddServer",
            lambda s, t: s.server_pool.AddServer(request, timeout=t),
            timeout,
        )

    async def remove_server(
        self,
        address: str,
        pool: str = "",
        *,
        timeout: float | None = None,
    ) -> bool:
        """Removes the server at `address` from an agent's pool; False if it held none."""
        request = server_pool_pb2.RemoveServerRequest(pool=pool, address=address)
        response = await self._unary(
            "ServerPool/RemoveServer",
            lambda s, t: s.server_pool.RemoveServer(request, timeout=t),
            timeout,
        )
        return response.removed

    async def notify_failed_server(
        self, address: str, pool: str = "", *, timeout: float | None = None
    ) -> server_pool_pb2.NotifyFailedServerResponse:
        request = server_pool_pb2.NotifyFailedServerRequest(pool=pool, address=address)
        return await self._unary(
            "ServerPool/NotifyFailedServer",
            lambda s, t: s.server_pool.NotifyFailedServer(request, timeout=t),
            timeout,
        )

    async def rebalance_servers(
        self, pool: str = "", *, timeout: float | None = None
    ) -> server_pool_pb2.RebalanceServersResponse:
        request = server_pool_pb2.RebalanceServersRequest(pool=pool)
        return await self._unary(
            "ServerPool/RebalanceServers",
            lambda s, t: s.server_pool.RebalanceServers(request, timeout=t),
            timeout,
        )

    # ------------------------------------------------------------------ Ring

    async def get_node(
        self, key: str, *, ring: str = "", timeout: float | None = None
    ) -> ring_pb2.RingNode:
        """The node owning `key`, asked of an agent (see `ring()` for local lookups)."""
        request = ring_pb2.GetNodeRequest(ring=ring, key=key)
        response = await self._unary(
            "Ring/GetNode", lambda s, t: s.ring.GetNode(request, timeout=t), timeout
        )
        return response.node

    async def get_nodes(
        self, key: str, n: int, *, ring: str = "", timeout: float | None = None
    ) -> list[ring_pb2.RingNode]:
        """Up to `n` distinct nodes for `key`, clockwise (replicas)."""
        request = ring_pb2.GetNodesRequest(ring=ring, key=key, count=n)
        response = await self._unary(
            "Ring/GetNodes", lambda s, t: s.ring.GetNodes(request, timeout=t), timeout
        )
        return list(response.nodes)

    async def list_nodes(
        self, ring: str = "", *, timeout: float | None = None
    ) -> ring_pb2.ListNodesResponse:
        request = ring_pb2.ListNodesRequest(ring=ring)
        return await self._unary(
            "Ring/ListNodes", lambda s, t: s.ring.ListNodes(request, timeout=t), timeout
        )

    async def get_ring(
        self,
        ring: str = "",
        *,
        timeout: float | None = None,
    ) -> ring_pb2.RingSnapshot:
        request = ring_pb2.GetRingRequest(ring=ring)
        response = await self._unary(
            "Ring/GetRing", lambda s, t: s.ring.GetRing(request, timeout=t), timeout
        )
        return response.ring

    async def add_node(
        self,
        address: str,
        port: int,
        *,
        ring: str = "",
        weight: int = 0,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ring_pb2.AddNodeResponse:
        """Registers a node on a ring (replicated cluster-wide)."""
        request = requests.add_node(address, port, ring, weight, metadata)
        return await self._unary(
            "Ring/AddNode",
            lambda s, t: s.ring.AddNode(request, timeout=t),
            timeout,
        )

    async def remove_node(
        self,
        node_id: str,
        *,
        ring: str = "",
        timeout: float | None = None,
    ) -> int:
        """Removes a registered node (`address:port`); returns the ring version."""
        request = ring_pb2.RemoveNodeRequest(ring=ring, id=node_id)
        response = await self._unary(
            "Ring/RemoveNode", lambda s, t: s.ring.RemoveNode(request, timeout=t), timeout
        )
        return response.version

    # ------------------------------------------------------------------ Keyring

    async def list_keys(self, *, timeout: float | None = None) -> keyring_pb2.ListKeysResponse:
        """The gossip keys installed across the cluster, as the answering agent gathers
        them (needs the operator scope when the agent has tokens)."""
        request = keyring_pb2.ListKeysRequest()
        return await self._unary(
            "Keyring/ListKeys", lambda s, t: s.keyring.ListKeys(request, timeout=t), timeout
        )

    async def install_key(
        self,
        key: bytes,
        *,
        timeout: float | None = None,
    ) -> keyring_pb2.KeyringResult:
        """Installs a gossip key on every member; the result says who answered."""
        request = keyring_pb2.InstallKeyRequest(key=key)
        response = await self._unary(
            "Keyring/InstallKey", lambda s, t: s.keyring.InstallKey(request, timeout=t), timeout
        )
        return response.result

    async def use_key(
        self,
        key: bytes,
        *,
        timeout: float | None = None,
    ) -> keyring_pb2.KeyringResult:
        """Makes an installed key the primary on every member."""
        request = keyring_pb2.UseKeyRequest(key=key)
        response = await self._unary(
            "Keyring/UseKey", lambda s, t: s.keyring.UseKey(request, timeout=t), timeout
        )
        return response.result

    async def remove_key(
        self,
        key: bytes,
        *,
        timeout: float | None = None,
    ) -> keyring_pb2.KeyringResult:
        """Removes a key that is not the primary from every member."""
        request = keyring_pb2.RemoveKeyRequest(key=key)
        response = await self._unary(
            "Keyring/RemoveKey", lambda s, t: s.keyring.RemoveKey(request, timeout=t), timeout
        )
        return response.result

    # ------------------------------------------------------------------ watches

    def watch_members(self) -> AsyncWatch[membership_pb2.WatchMembersResponse, MembersUpdate]:
        """Member changes: a SNAPSHOT, then UPSERT / REMOVED; resumes without repeats."""
        request = membership_pb2.WatchMembersRequest()
        return AsyncWatch(
            self,
            "Membership/WatchMembers",
            lambda s: s.membership.WatchMembers(request),
            members_handler(),
        )

    def watch_events(
        self,
        *,
        types: Iterable[membership_pb2.EventType.ValueType] = (),
        user_event_name: str = "",
    ) -> AsyncWatch[membership_pb2.WatchEventsResponse, EventUpdate]:
        """Events as agents emit them. No replay: see docs/client.md for the
        semantics across a resume (`EventUpdate.resumed`)."""
        request = requests.watch_events(types, user_event_name)
        return AsyncWatch(
            self,
            "Membership/WatchEvents",
            lambda s: s.membership.WatchEvents(request),
            events_handler(),
        )

    def watch_leader(self) -> AsyncWatch[membership_pb2.WatchLeaderResponse, LeaderUpdate]:
        """Leader changes; a resumed stream emits only if the leader or epoch changed."""
        request = membership_pb2.WatchLeaderRequest()
        return AsyncWatch(
            self,
            "Membership/WatchLeader",
            lambda s: s.membership.WatchLeader(request),
            leader_handler(),
        )

    def watch_ring(self, name: str = "") -> AsyncWatch[ring_pb2.WatchRingResponse, RingUpdate]:
        """Ring snapshots, emitted only when the nodes (checksum) change."""
        request = ring_pb2.WatchRingRequest(ring=name)
        return AsyncWatch(
            self,
            "Ring/WatchRing",
            lambda s: s.ring.WatchRing(request),
            ring_handler(),
        )

    async def ring(self, name: str = "", *, timeout: float | None = None) -> AsyncLiveRing:
        """A local copy of a ring kept current in the background; lookups do no RPC.
        Waits for the first snapshot (at most `timeout`)."""
        live = AsyncLiveRing(self, name)
        await live.wait_ready(self._options.timeout if timeout is None else timeout)
        return live

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the client is closed; create a new AsyncClient")

    def _stubs(self, address: str) -> _Stubs:
        conn = self._conns.get(address)
        if conn is not None:
            return conn
        with self._conns_lock:
            conn = self._conns.get(address)
            if conn is None:
                self._check_open()
                channel = async_channel(
                    address,
                    [*CHANNEL_OPTIONS, *self._options.channel_options],
                    self._options.token,
                    self._credentials,
                    self._options.tls_server_name,
                )
                conn = _Stubs(
                    channel,
                    membership_pb2_grpc.MembershipStub(channel),
                    server_pool_pb2_grpc.ServerPoolStub(channel),
                    ring_pb2_grpc.RingStub(channel),
                    keyring_pb2_grpc.KeyringStub(channel),
                )
                self._conns[address] = conn
            return conn

    async def _rediscover(self) -> None:
        """Re-resolves the seeds (DNS blocks: the asyncio client does it off its loop),
        then updates the pool with the answers."""
        resolved: dict[str, Sequence[str]] = {}
        for seed in self._failover.seeds:
            try:
                resolved[seed] = await run_blocking(self._options.resolver, seed)
            except (OSError, ValueError):
                continue
        self._failover.rediscover(resolved)

    async def _next_server(self, tried: Sequence[Server]) -> Server | None:
        """The pool's best server not tried yet in this call; re-discovers from the
        seeds when the pool has nothing usable left."""
        tried_names = {s.name for s in tried}
        tried_addresses = {s.address for s in tried}
        for attempt in range(2):
            if attempt == 1 or self._failover.needs_rediscovery():
                await self._rediscover()
            for server in self._failover.candidates():
                if server.name not in tried_names and server.address not in tried_addresses:
                    return server
        return None

    async def _unary(
        self,
        method: str,
        invoke: Callable[[_Stubs, float], Awaitable[T]],
        timeout: float | None,
    ) -> T:
        self._check_open()
        budget = self._options.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        # Only an attempt that may be repeated elsewhere is cut short.
        per_attempt = self._options.attempt_timeout if is_idempotent(method) else None
        tried: list[Server] = []
        last: ControlPlaneError | None = None
        cut: Server | None = None
        while True:
            server = self._failover.find_server() if not tried else None
            if server is None:
                server = await self._next_server(tried)
            if server is None and cut is not None:
                # Every server was tried and the last one was cut off by the attempt
                # deadline, not the call's: it may be slow rather than hung, so it
                # gets whatever the call's deadline leaves.
                server, per_attempt = cut, None
            if server is None:
                raise exhausted(method, tried, last)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"{method}: the {budget:g} s deadline passed before a server answered "
                    f"(tried {', '.join(s.address for s in tried) or 'none'}); raise the timeout"
                )
            attempt = remaining if per_attempt is None else min(per_attempt, remaining)
            try:
                response = await invoke(self._stubs(server.address), attempt)
            except grpc.RpcError as error:
                verdict = classify(
                    error, method, server, deadline_passed=time.monotonic() >= deadline
                )
                if verdict.server_failed:
                    self._failover.failed(server)
                if not verdict.retry:
                    raise verdict.error from None
                tried.append(server)
                last = verdict.error
                cut = server if attempt < remaining and isinstance(last, DeadlineExceeded) else None
                continue
            self._failover.succeeded(server)
            return response

    async def _ping(self, server: Server) -> bool:
        try:
            status = await check_health_async(
                self._stubs(server.address).channel,
                timeout=PING_TIMEOUT,
            )
        except (grpc.RpcError, ControlPlaneError):
            return False
        return status == HealthStatus.SERVING

    async def _rebalance(self) -> None:
        plan = self._failover.plan_rebalance()
        results: list[tuple[Server, bool]] = []
        for server in plan.ping_order:
            if self._stop.is_set():
                return
            results.append((server, await self._ping(server)))
            if results[-1][1]:
                break
        self._failover.apply_pings(plan, results)

    async def _maintain(self) -> None:
        """Heartbeats at the server's interval, rebalances at the pool's interval."""
        next_heartbeat = time.monotonic()
        next_rebalance = time.monotonic() + self._failover.next_rebalance_interval()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_heartbeat:
                try:
                    response = await self.heartbeat()
                    next_heartbeat = time.monotonic() + heartbeat_interval(response, self._options)
                except ControlPlaneError:
                    next_heartbeat = time.monotonic() + min(
                        HEARTBEAT_RETRY,
                        self._options.heartbeat_interval_override or HEARTBEAT_RETRY,
                    )
            if now >= next_rebalance:
                await self._rebalance()
                next_rebalance = time.monotonic() + self._failover.next_rebalance_interval()
            await self._stop.wait(max(0.0, min(next_heartbeat, next_rebalance) - time.monotonic()))


class AsyncWatch(Generic[M, U]):
    """A resumable server stream, iterated with `async for` for updates of type U.

    When the stream fails (agent gone, UNAVAILABLE), the watch reopens it on the
    next server; the fresh stream starts from a snapshot and the handler emits
    only the difference with what was already emitted. It gives up (raising
    `Unavailable`) when every known server failed in a row without delivering
    a message. An agent that cuts off a reader too slow for its backlog
    (RESOURCE_EXHAUSTED) is asked again at once, after a short pause, and the
    fresh snapshot fills the gap; `resubscriptions` counts those. `close()` (from
    anywhere) ends the iteration.
    """

    def __init__(
        self,
        client: AsyncClient,
        method: str,
        open_stream: Callable[[_Stubs], Stream[M]],
        handle: Callable[[M, bool, bool], list[U]],
    ) -> None:
        client._check_open()
        self._client = client
        self._method = method
        self._open = open_stream
        self._handle = handle
        self._pending: collections.deque[U] = collections.deque()
        self._lock = Mutex()
        self._call: Stream[M] | None = None
        self._stream: AsyncIterator[M] | None = None
        self._server: Server | None = None
        self._closed = False
        self._streams_with_data = 0
        self._first = True
        self._tried: list[Server] = []
        self._cutoffs_in_a_row = 0
        self.resumptions = 0
        """How many times the stream was reopened after delivering data."""
        self.resubscriptions = 0
        """How many times an agent cut this watch off as too slow and it subscribed again."""
        client._watches.add(self)

    @property
    def server(self) -> str | None:
        """Address of the agent currently streaming."""
        return self._server.address if self._server is not None else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            call = self._call
        if call is not None:
            call.cancel()
        self._client._watches.discard(self)

    async def __aenter__(self) -> AsyncWatch[M, U]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[U]:
        return self

    async def __anext__(self) -> U:
        while not self._pending:
            await self._receive()
        return self._pending.popleft()

    async def _connect(self) -> AsyncIterator[M]:
        server = await self._client._next_server(self._tried)
        if server is None:
            tried, self._tried = self._tried, []
            self.close()
            raise exhausted(self._method, tried, None)
        call = self._open(self._client._stubs(server.address))
        with self._lock:
            if self._closed:
                call.cancel()
                raise StopAsyncIteration
            self._call, self._server = call, server
            self._stream = call.__aiter__()
        self._first = True
        return self._stream

    async def _receive(self) -> None:
        if self._closed:
            raise StopAsyncIteration
        stream = self._stream or await self._connect()
        server = self._server
        assert server is not None
        try:
            message = await stream.__anext__()
        except StopAsyncIteration:
            if self._closed:
                raise
            # The agent ended the stream (shutting down): resume elsewhere.
            self._drop(server, failed=False)
            return
        except CANCELLED:
            if self._closed:
                raise StopAsyncIteration from None
            raise
        except grpc.RpcError as error:
            if self._closed:
                raise StopAsyncIteration from None
            verdict = classify(error, self._method, server, deadline_passed=False)
            if isinstance(verdict.error, ResourceExhausted):
                await self._resubscribe(verdict.error)
                return
            if not verdict.retry:
                self.close()
                raise verdict.error from None
            self._drop(server, failed=True)
            return
        first, self._first = self._first, False
        self._cutoffs_in_a_row = 0
        if first:
            self._tried = []
            self._streams_with_data += 1
            if self._streams_with_data > 1:
                self.resumptions += 1
        self._client._failover.succeeded(server)
        self._pending.extend(self._handle(message, first, self._streams_with_data > 1))

    async def _resubscribe(self, error: ResourceExhausted) -> None:
        """The agent cut this reader off as too slow (its backlog bound): subscribe
        again, from a fresh snapshot, after a pause that doubles while no message
        arrives in between; give up after MAX_CUTOFFS_IN_A_ROW such cut-offs."""
        self._cutoffs_in_a_row += 1
        if self._cutoffs_in_a_row > MAX_CUTOFFS_IN_A_ROW:
            self.close()
            raise error
        with self._lock:
            self._call = None
            self._stream = None
        self.resubscriptions += 1
        await sleep(min(RESUBSCRIBE_PAUSE * 2 ** (self._cutoffs_in_a_row - 1), 1.0))

    def _drop(self, server: Server, *, failed: bool) -> None:
        if failed:
            self._client._failover.failed(server)
        self._tried.append(server)
        with self._lock:
            self._call = None
            self._stream = None


class AsyncLiveRing:
    """A ring kept current by a background WatchRing; lookups are local.

    `get_node` / `get_nodes` answer from an immutable `HashRing` snapshot that is
    swapped atomically when the ring changes, so lookups never block and never
    call the network.
    """

    def __init__(self, client: AsyncClient, name: str = "") -> None:
        self.name = name or "default"
        self._state = RingState.empty(self.name)
        self._ready = Event()
        self._error: ControlPlaneError | None = None
        self._watch = client.watch_ring(name)
        self._background = Background(self._run, f"controlplane-ring-{self.name}")

    async def _run(self) -> None:
        try:
            async for update in self._watch:
                self._state = RingState.of(update.ring)
                self._ready.set()
        except ControlPlaneError as error:
            self._error = error
        finally:
            self._ready.set()

    async def wait_ready(self, timeout: float) -> None:
        """Waits for the first snapshot; raises the watch's error or DeadlineExceeded."""
        if not await self._ready.wait(timeout):
            self.close()
            raise DeadlineExceeded(
                f"ring {self.name!r}: no snapshot within {timeout:g} s; check the agents"
            )
        if self._error is not None:
            raise self._error

    @property
    def error(self) -> ControlPlaneError | None:
        """Why the background watch stopped, if it did."""
        return self._error

    @property
    def state(self) -> RingState:
        return self._state

    @property
    def checksum(self) -> int:
        return self._state.snapshot.checksum

    @property
    def version(self) -> int:
        return self._state.snapshot.version

    @property
    def resubscriptions(self) -> int:
        """How many times an agent cut the watch off as too slow and it resubscribed."""
        return self._watch.resubscriptions

    def nodes(self) -> Mapping[str, ring_pb2.RingNode]:
        return self._state.nodes

    def get_node(self, key: str | bytes) -> str:
        """Id (`address:port`) of the node owning `key`; FailedPrecondition if empty."""
        return self._state.get_node(key)

    def get_nodes(self, key: str | bytes, n: int) -> list[str]:
        return self._state.get_nodes(key, n)

    def close(self) -> None:
        self._watch.close()
        self._background.cancel()

    async def __aenter__(self) -> AsyncLiveRing:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
