"""The four public servicers: real subclasses of the generated bases, one typed
method per RPC, each handing the call to the component that implements it.

They hold no logic: the components (api/membership.py, api/heartbeat.py,
api/server_pool.py, api/ring.py, api/keyring.py) do the work, and
`controlplane.api.services` wraps every method of a servicer once, when it is
registered, with the size limit, the access check and the error mapping. Because
the classes are written out, mypy checks every RPC's signature against the
generated base, and a test checks that no RPC is left to the base's UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc.aio

from controlplane.api.heartbeat import HeartbeatRpcs
from controlplane.api.keyring import KeyringService
from controlplane.api.membership import LeaderRpcs, MembershipService
from controlplane.api.queries import QueryRpcs
from controlplane.api.ring import RingService
from controlplane.api.server_pool import ServerPoolRpcs
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

Context = grpc.aio.ServicerContext[Any, Any]


class MembershipServicer(membership_pb2_grpc.MembershipServicer):
    """controlplane.v1.Membership, served by MembershipService and LeaderRpcs."""

    def __init__(
        self,
        members: MembershipService,
        leader: LeaderRpcs,
        describe: Callable[[], membership_pb2.GetInfoResponse],
        monitor: Callable[
            [membership_pb2.MonitorRequest], AsyncIterator[membership_pb2.MonitorResponse]
        ],
        queries: QueryRpcs,
    ) -> None:
        self._members = members
        self._leader = leader
        self._describe = describe
        self._monitor = monitor
        self._queries = queries

    async def Join(
        self, request: membership_pb2.JoinRequest, context: Context
    ) -> membership_pb2.JoinResponse:
        return await self._members.Join(request, context)

    async def Leave(
        self, request: membership_pb2.LeaveRequest, context: Context
    ) -> membership_pb2.LeaveResponse:
        return await self._members.Leave(request, context)

    async def ListMembers(
        self, request: membership_pb2.ListMembersRequest, context: Context
    ) -> membership_pb2.ListMembersResponse:
        return await self._members.ListMembers(request, context)

    async def GetLocalMember(
        self, request: membership_pb2.GetLocalMemberRequest, context: Context
    ) -> membership_pb2.GetLocalMemberResponse:
        return await self._members.GetLocalMember(request, context)

    async def GetCoordinate(
        self, request: membership_pb2.GetCoordinateRequest, context: Context
    ) -> membership_pb2.GetCoordinateResponse:
        return await self._members.GetCoordinate(request, context)

    async def UpdateTags(
        self, request: membership_pb2.UpdateTagsRequest, context: Context
    ) -> membership_pb2.UpdateTagsResponse:
        return await self._members.UpdateTags(request, context)

    async def ForceLeave(
        self, request: membership_pb2.ForceLeaveRequest, context: Context
    ) -> membership_pb2.ForceLeaveResponse:
        return await self._members.ForceLeave(request, context)

    async def FireUserEvent(
        self, request: membership_pb2.FireUserEventRequest, context: Context
    ) -> membership_pb2.FireUserEventResponse:
        return await self._members.FireUserEvent(request, context)

    async def WatchMembers(
        self, request: membership_pb2.WatchMembersRequest, context: Context
    ) -> AsyncIterator[membership_pb2.WatchMembersResponse]:
        async for response in self._members.WatchMembers(request, context):
            yield response

    async def WatchEvents(
        self, request: membership_pb2.WatchEventsRequest, context: Context
    ) -> AsyncIterator[membership_pb2.WatchEventsResponse]:
        async for response in self._members.WatchEvents(request, context):
            yield response

    async def GetLeader(
        self, request: membership_pb2.GetLeaderRequest, context: Context
    ) -> membership_pb2.GetLeaderResponse:
        return await self._leader.GetLeader(request, context)

    async def GetLeaderHistory(
        self, request: membership_pb2.GetLeaderHistoryRequest, context: Context
    ) -> membership_pb2.GetLeaderHistoryResponse:
        return await self._leader.GetLeaderHistory(request, context)

    async def WatchLeader(
        self, request: membership_pb2.WatchLeaderRequest, context: Context
    ) -> AsyncIterator[membership_pb2.WatchLeaderResponse]:
        async for response in self._leader.WatchLeader(request, context):
            yield response

    async def GetInfo(
        self, request: membership_pb2.GetInfoRequest, context: Context
    ) -> membership_pb2.GetInfoResponse:
        return self._describe()

    async def Monitor(
        self, request: membership_pb2.MonitorRequest, context: Context
    ) -> AsyncIterator[membership_pb2.MonitorResponse]:
        async for response in self._monitor(request):
            yield response

    async def Query(
        self, request: membership_pb2.QueryRequest, context: Context
    ) -> AsyncIterator[membership_pb2.QueryResponse]:
        async for response in self._queries.Query(request, context):
            yield response

    async def WatchQueries(
        self, request: membership_pb2.WatchQueriesRequest, context: Context
    ) -> AsyncIterator[membership_pb2.WatchQueriesResponse]:
        async for response in self._queries.WatchQueries(request, context):
            yield response

    async def RespondQuery(
        self, request: membership_pb2.RespondQueryRequest, context: Context
    ) -> membership_pb2.RespondQueryResponse:
        return await self._queries.RespondQuery(request, context)


class ServerPoolServicer(server_pool_pb2_grpc.ServerPoolServicer):
    """controlplane.v1.ServerPool, served by ServerPoolRpcs and HeartbeatRpcs."""

    def __init__(self, pools: ServerPoolRpcs, heartbeats: HeartbeatRpcs) -> None:
        self._pools = pools
        self._heartbeats = heartbeats

    async def Heartbeat(
        self, request: server_pool_pb2.HeartbeatRequest, context: Context
    ) -> server_pool_pb2.HeartbeatResponse:
        return self._heartbeats.Heartbeat(request, context)

    async def RefreshServerLists(
        self, request: server_pool_pb2.RefreshServerListsRequest, context: Context
    ) -> server_pool_pb2.RefreshServerListsResponse:
        return await self._pools.RefreshServerLists(request, context)

    async def SetBackupServers(
        self, request: server_pool_pb2.SetBackupServersRequest, context: Context
    ) -> server_pool_pb2.SetBackupServersResponse:
        return await self._pools.SetBackupServers(request, context)

    async def AddServer(
        self, request: server_pool_pb2.AddServerRequest, context: Context
    ) -> server_pool_pb2.AddServerResponse:
        return await self._pools.AddServer(request, context)

    async def RemoveServer(
        self, request: server_pool_pb2.RemoveServerRequest, context: Context
    ) -> server_pool_pb2.RemoveServerResponse:
        return await self._pools.RemoveServer(request, context)

    async def FindServer(
        self, request: server_pool_pb2.FindServerRequest, context: Context
    ) -> server_pool_pb2.FindServerResponse:
        return await self._pools.FindServer(request, context)

    async def NotifyFailedServer(
        self, request: server_pool_pb2.NotifyFailedServerRequest, context: Context
    ) -> server_pool_pb2.NotifyFailedServerResponse:
        return await self._pools.NotifyFailedServer(request, context)

    async def RebalanceServers(
        self, request: server_pool_pb2.RebalanceServersRequest, context: Context
    ) -> server_pool_pb2.RebalanceServersResponse:
        return await self._pools.RebalanceServers(request, context)

    async def ListServers(
        self, request: server_pool_pb2.ListServersRequest, context: Context
    ) -> server_pool_pb2.ListServersResponse:
        return await self._pools.ListServers(request, context)

    async def ListClients(
        self, request: server_pool_pb2.ListClientsRequest, context: Context
    ) -> server_pool_pb2.ListClientsResponse:
        return await self._heartbeats.ListClients(request, context)


class RingServicer(ring_pb2_grpc.RingServicer):
    """controlplane.v1.Ring, served by RingService."""

    def __init__(self, rings: RingService) -> None:
        self._rings = rings

    async def GetNode(
        self, request: ring_pb2.GetNodeRequest, context: Context
    ) -> ring_pb2.GetNodeResponse:
        return await self._rings.GetNode(request, context)

    async def GetNodes(
        self, request: ring_pb2.GetNodesRequest, context: Context
    ) -> ring_pb2.GetNodesResponse:
        return await self._rings.GetNodes(request, context)

    async def ListNodes(
        self, request: ring_pb2.ListNodesRequest, context: Context
    ) -> ring_pb2.ListNodesResponse:
        return await self._rings.ListNodes(request, context)

    async def GetRing(
        self, request: ring_pb2.GetRingRequest, context: Context
    ) -> ring_pb2.GetRingResponse:
        return await self._rings.GetRing(request, context)

    async def AddNode(
        self, request: ring_pb2.AddNodeRequest, context: Context
    ) -> ring_pb2.AddNodeResponse:
        return await self._rings.AddNode(request, context)

    async def RemoveNode(
        self, request: ring_pb2.RemoveNodeRequest, context: Context
    ) -> ring_pb2.RemoveNodeResponse:
        return await self._rings.RemoveNode(request, context)

    async def WatchRing(
        self, request: ring_pb2.WatchRingRequest, context: Context
    ) -> AsyncIterator[ring_pb2.WatchRingResponse]:
        async for response in self._rings.WatchRing(request, context):
            yield response


class KeyringServicer(keyring_pb2_grpc.KeyringServicer):
    """controlplane.v1.Keyring, served by KeyringService."""

    def __init__(self, keys: KeyringService) -> None:
        self._keys = keys

    async def ListKeys(
        self, request: keyring_pb2.ListKeysRequest, context: Context
    ) -> keyring_pb2.ListKeysResponse:
        return await self._keys.ListKeys(request, context)

    async def InstallKey(
        self, request: keyring_pb2.InstallKeyRequest, context: Context
    ) -> keyring_pb2.InstallKeyResponse:
        return await self._keys.InstallKey(request, context)

    async def UseKey(
        self, request: keyring_pb2.UseKeyRequest, context: Context
    ) -> keyring_pb2.UseKeyResponse:
        return await self._keys.UseKey(request, context)

    async def RemoveKey(
        self, request: keyring_pb2.RemoveKeyRequest, context: Context
    ) -> keyring_pb2.RemoveKeyResponse:
        return await self._keys.RemoveKey(request, context)
