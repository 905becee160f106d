"""The Ring service: consistent hash rings over membership and registrations.

The ring directory (controlplane.rings) is rebuilt from the member list on every
membership event and from registrations received on the gossip "ring" channel;
AddNode and RemoveNode write registrations, broadcast them, and persist the
directory's registrations in the data directory so they survive a restart.
WatchRing streams a snapshot whenever a ring's version changes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc.aio

from controlplane.api.hub import EventHub
from controlplane.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from controlplane.membership import (
    ChannelDelivery,
    ChannelStateReceived,
    Membership,
    MemberStatus,
)
from controlplane.ring import EmptyRingError
from controlplane.rings import (
    MAX_REGISTRATIONS,
    RingDirectory,
    RingEntry,
    RingMember,
    RingView,
    check_address,
    check_key,
    check_metadata,
    check_weight,
    decode_registration,
    decode_state,
    encode_registration,
    encode_state,
    ring_name,
)
from controlplane.v1 import ring_pb2 as pb

log = logging.getLogger("controlplane.ring")

CHANNEL = "ring"


def entry_to_proto(entry: RingEntry) -> pb.RingNode:
    return pb.RingNode(
        id=entry.id,
        address=entry.address,
        port=entry.port,
        weight=entry.weight,
        metadata=dict(entry.metadata),
        source=pb.RING_NODE_SOURCE_REGISTERED
        if entry.registered
        else pb.RING_NODE_SOURCE_MEMBERSHIP,
        member_name=entry.member_name,
    )


def view_to_proto(view: RingView) -> pb.RingSnapshot:
    return pb.RingSnapshot(
        name=view.name,
        version=view.version,
        checksum=view.checksum,
        nodes=[entry_to_proto(e) for e in view.entries],
    )


class RegistrationStore:
    """The directory's registrations on disk, rewritten atomically on each change."""

    def __init__(self, data_dir: str) -> None:
        self.path = Path(data_dir) / "rings.state"

    def load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.error("cannot read %s (%s); starting without registrations", self.path, error)
            return None

    def save(self, data: bytes) -> None:
        temporary = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as error:
            log.error("cannot write %s: %s", self.path, error.strerror)


class RingService:
    """controlplane.v1.Ring over the agent's ring directory."""

    def __init__(
        self,
        directory: RingDirectory,
        layer: Membership,
        send: Callable[[str, bytes], None],
        clock: Callable[[], float],
        store: RegistrationStore | None = None,
    ) -> None:
        self._directory = directory
        self._layer = layer
        self._send = send
        self._clock = clock
        self._store = store
        self.changes: EventHub[str] = EventHub()
        # Node messages of the latest version of each ring, built once per version.
        self._node_protos: dict[str, tuple[int, dict[str, pb.RingNode]]] = {}
        if store is not None and (data := store.load()) is not None:
            registrations = decode_state(data)
            if registrations is None:
                log.warning("%s is damaged; starting without registrations", store.path)
            for registration in registrations or ():
                directory.apply(registration, clock())
        self.refresh_members()

    # ------------------------------------------------------------ inputs

    def refresh_members(self) -> None:
        """Rebuilds the rings from the member list (on every membership event)."""
        members = [
            RingMember(m.name, m.address[0], m.tags, m.status is MemberStatus.ALIVE)
            for m in self._layer.members()
        ]
        self._publish(self._directory.set_members(members))

    def on_channel(self, effect: ChannelDelivery | ChannelStateReceived) -> None:
        now = self._clock()
        if isinstance(effect, ChannelDelivery):
            registration = decode_registration(effect.payload)
            incoming = [registration] if registration is not None else []
        else:
            incoming = decode_state(effect.state) or []
        before = {name: self._directory.view(name).version for name in self._directory.names()}
        changed = [r for r in incoming if self._directory.apply(r, now)]
        if changed:
            self._persist()
            self._publish(
                [
                    n
                    for n in self._directory.names()
                    if self._directory.view(n).version != before.get(n)
                ]
            )

    def local_state(self) -> bytes:
        self._directory.expire(self._clock())
        return encode_state(self._directory.registrations())

    def _persist(self) -> None:
        if self._store is not None:
            self._store.save(encode_state(self._directory.registrations()))

    def _publish(self, rings: list[str]) -> None:
        for ring in rings:
            self.changes.publish(ring)

    # -------------------------------------------------------------- RPCs

    def _view(self, raw_name: str) -> RingView:
        return self._directory.view(ring_name(raw_name))

    def _node_proto(self, view: RingView, node_id: str) -> pb.RingNode:
        cached = self._node_protos.get(view.name)
        if cached is None or cached[0] != view.version:
            cached = (view.version, {e.id: entry_to_proto(e) for e in view.entries})
            self._node_protos[view.name] = cached
        return cached[1][node_id]

    @staticmethod
    def _non_empty(view: RingView) -> RingView:
        if not view.entries:
            raise FailedPrecondition(
                f"ring {view.name!r} has no nodes: members join it with the tags "
                f"ring={view.name} and service_port=PORT, or AddNode registers one"
            )
        return view

    async def GetNode(
        self, request: pb.GetNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetNodeResponse:
        key = check_key(request.key)
        view = self._non_empty(self._view(request.ring))
        try:
            node = view.ring.get_node(key)
        except EmptyRingError as error:  # every node has weight 0 vnodes
            raise FailedPrecondition(f"ring {view.name!r} owns no points: {error}") from None
        return pb.GetNodeResponse(node=self._node_proto(view, node), version=view.version)

    async def GetNodes(
        self, request: pb.GetNodesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetNodesResponse:
        key = check_key(request.key)
        if request.count < 1:
            raise InvalidArgument.for_field("count", f"must be at least 1, got {request.count}")
        view = self._non_empty(self._view(request.ring))
        nodes = view.ring.get_nodes(key, request.count)
        return pb.GetNodesResponse(
            nodes=[self._node_proto(view, n) for n in nodes], version=view.version
        )

    async def ListNodes(
        self, request: pb.ListNodesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListNodesResponse:
        view = self._view(request.ring)
        return pb.ListNodesResponse(
            nodes=[entry_to_proto(e) for e in view.entries],
            version=view.version,
            checksum=view.checksum,
        )

    async def GetRing(
        self, request: pb.GetRingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetRingResponse:
        return pb.GetRingResponse(ring=view_to_proto(self._view(request.ring)))

    async def AddNode(
        self, request: pb.AddNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AddNodeResponse:
        ring = ring_name(request.ring)
        node = check_address(request.address, request.port)
        weight = check_weight(request.weight)
        metadata = check_metadata(request.metadata)
        live = sum(1 for r in self._directory.registrations() if not r.removed)
        if live >= MAX_REGISTRATIONS and not self._directory.is_registered(ring, node):
            raise ResourceExhausted(
                f"at most {MAX_REGISTRATIONS} registered nodes per cluster; remove unused ones"
            )
        registration = self._directory.prepare(
            ring, request.address, request.port, weight, metadata
        )
        # Broadcast first: a registration too large for one datagram is refused
        # before anything is kept.
        self._send(CHANNEL, encode_registration(registration))
        self._directory.apply(registration, self._clock())
        self._persist()
        self._publish([ring])
        view = self._directory.view(ring)
        return pb.AddNodeResponse(node=entry_to_proto(view.entry(node)), version=view.version)

    async def RemoveNode(
        self, request: pb.RemoveNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RemoveNodeResponse:
        ring = ring_name(request.ring)
        if not request.id:
            raise InvalidArgument.for_field("id", "must be a node id, address:port")
        removal = self._directory.unregister(ring, request.id, self._clock())
        if removal is None:
            view = self._directory.view(ring)
            if any(e.id == request.id for e in view.entries):
                raise FailedPrecondition(
                    f"node {request.id!r} comes from membership; remove the member's "
                    f"ring tag instead"
                )
            raise NotFound(f"ring {ring!r} has no registered node {request.id!r}")
        self._send(CHANNEL, encode_registration(removal))
        self._persist()
        self._publish([ring])
        return pb.RemoveNodeResponse(version=self._directory.view(ring).version)

    async def WatchRing(
        self, request: pb.WatchRingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchRingResponse]:
        ring = ring_name(request.ring)
        with self.changes.subscribe() as subscription:
            last = self._directory.view(ring)
            yield pb.WatchRingResponse(ring=view_to_proto(last))
            async for changed in subscription:
                if changed != ring:
                    continue
                view = self._directory.view(ring)
                if view.version != last.version:
                    last = view
                    yield pb.WatchRingResponse(ring=view_to_proto(view))
