"""The Ring service: consistent hash rings over membership and registrations.

The ring directory (controlplane.rings.directory) follows membership one event at a time
(only the members an event names are re-read) and merges registrations received on
the gossip "ring" channel, a message or a peer's full state at a time; both cost
what they change, not the size of the fleet. AddNode and RemoveNode write
registrations, broadcast them, and persist the directory's registrations in the
data directory so they survive a restart. WatchRing streams a snapshot whenever a
ring's version changes.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc.aio

from controlplane.api.hub import EventHub
from controlplane.client.ringview import settings_to_proto
from controlplane.configerror import ConfigError
from controlplane.datadir import atomic_write, write_failure
from controlplane.errors import (
    ControlPlaneError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from controlplane.membership import (
    ChannelDelivery,
    ChannelStateReceived,
    MemberEvent,
    MemberInfo,
    Membership,
    MemberStatus,
)
from controlplane.ring import EmptyRingError
from controlplane.rings.directory import (
    MAX_STATE_REGISTRATIONS,
    Registration,
    RingDirectory,
    RingEntry,
    RingMember,
    RingView,
    StateDecoder,
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
# Registrations learned from gossip reach the disk within this delay, in one write.
PERSIST_DELAY = 0.5
# A peer's ring state comes with every push-pull. One this large (about 750
# registrations) or larger is decoded and merged a slice at a time, this many
# registrations per slice (a few ms each), yielding to the loop between slices.
INLINE_STATE_BYTES = 32 * 1024
STATE_SLICE = 500
# Digests of the peer states merged last: in a settled cluster every peer sends
# the same state again and again, and merging it again would change nothing.
REMEMBERED_STATES = 32


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


def ring_member(member: MemberInfo) -> RingMember:
    return RingMember(
        member.name, member.address[0], member.tags, member.status is MemberStatus.ALIVE
    )


def view_to_proto(view: RingView) -> pb.RingSnapshot:
    return pb.RingSnapshot(
        name=view.name,
        version=view.version,
        checksum=view.checksum,
        nodes=[entry_to_proto(e) for e in view.entries],
        settings=settings_to_proto(view.ring.settings),
    )


class RegistrationStore:
    """The directory's registrations on disk, rewritten atomically on each change.

    Every write runs on one writer thread, in order, so that a write an RPC waits
    for cannot be overtaken by an older background write (and no fsync holds the
    loop). A file that exists but cannot be read or decoded stops the start
    (ConfigError): written over, its registrations would be lost for good."""

    # Background writes that fail are logged at most this often (a full disk would
    # otherwise log every change learned from gossip).
    FAILURE_LOG_INTERVAL = 60.0

    def __init__(self, data_dir: str) -> None:
        self.path = Path(data_dir) / "rings.state"
        self._writer: ThreadPoolExecutor | None = None
        self._failure_logged_at: float | None = None
        self._failures = 0

    def load(self) -> list[Registration] | None:
        """The registrations kept on disk; None when there is no file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ConfigError(
                f"ring registrations file {str(self.path)!r} cannot be read:"
                f" {error.strerror or error}"
            ) from None
        registrations = decode_state(data)
        if registrations is None:
            raise ConfigError(
                f"ring registrations file {str(self.path)!r} is damaged; move it aside to"
                " start without it (the agent relearns registrations from its peers)"
            )
        return registrations

    def _submit(self, write: Callable[[], None]) -> asyncio.Future[None]:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="rings-state")
        return asyncio.wrap_future(self._writer.submit(write))

    def write(self, data: bytes) -> asyncio.Future[None]:
        """Writes `data` on the writer thread; the future fails with the OSError."""
        return self._submit(lambda: self.save(data))

    def write_registrations(self, registrations: list[Registration]) -> asyncio.Future[None]:
        """Encodes and writes `registrations` (frozen records) on the writer thread:
        encoding 10,000 of them takes about 30 ms, too long for the event loop."""
        return self._submit(lambda: self.save(encode_state(registrations)))

    def save_in_background(self, data: bytes) -> None:
        """Writes `data` on the writer thread; a failure is logged (rate-limited)."""
        self.write(data).add_done_callback(self._log_failure)

    def _log_failure(self, done: asyncio.Future[None]) -> None:
        error = None if done.cancelled() else done.exception()
        if error is None:
            if self._failures:
                log.warning("%s written again after %d failed writes", self.path, self._failures)
                self._failures, self._failure_logged_at = 0, None
            return
        self._failures += 1
        now = time.monotonic()
        last = self._failure_logged_at
        if last is None or now - last >= self.FAILURE_LOG_INTERVAL:
            self._failure_logged_at = now
            reason = error.strerror if isinstance(error, OSError) else error
            log.error(
                "cannot write %s: %s (%d writes failed; registrations are kept in"
                " memory and written with the next change)",
                self.path,
                reason,
                self._failures,
            )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def save(self, data: bytes) -> None:
        """Replaces the file with `data` now; raises OSError on failure."""
        atomic_write(self.path, data, mode=0o644)


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
        # The drop count last logged; logging at each doubling keeps a flood of
        # registrations beyond the cap from flooding the log as well.
        self._dropped_logged = 0
        self._state_cache: tuple[int, bytes] | None = None
        self._persist_due = False
        self._merged_states: OrderedDict[bytes, None] = OrderedDict()
        self._merges: set[asyncio.Task[None]] = set()
        # Serializes AddNode and RemoveNode: each writes the registrations it expects
        # to hold, and two at once would each write a state without the other.
        self._local_changes = asyncio.Lock()
        if store is not None and (registrations := store.load()):
            # One merge: every ring is derived once, however many nodes it holds.
            self._merge(registrations, clock(), f"{store.path}")
        self.refresh_members()

    # ------------------------------------------------------------ inputs

    @property
    def directory(self) -> RingDirectory:
        """The rings and registrations this service keeps (read-only use)."""
        return self._directory

    def refresh_members(self) -> None:
        """Brings the rings in line with the whole member list (at start-up); a
        pass over every member, so membership events go to :meth:`on_member_event`."""
        members = [ring_member(m) for m in self._layer.members()]
        self._publish(self._directory.set_members(members))

    def on_member_event(self, event: MemberEvent) -> None:
        """Updates the rings for the members one event names, and only those."""
        changed: list[RingMember] = []
        removed: list[str] = []
        for info in event.members:
            # The layer's current state wins over the event's copy, which a
            # coalescing window can have made stale. The layer forgets a member
            # before it reports member-reap, so a reaped member reads as None;
            # one that rejoined after its reap is current again and stays.
            current = self._layer.member(info.name)
            if current is None:
                removed.append(info.name)
            else:
                changed.append(ring_member(current))
        self._publish(self._directory.update_members(changed, removed))

    def on_channel(self, effect: ChannelDelivery | ChannelStateReceived) -> None:
        if isinstance(effect, ChannelDelivery):
            registration = decode_registration(effect.payload)
            if registration is not None:
                self._merge_and_publish([registration], f"gossip from {effect.origin}")
            return
        if len(effect.state) > INLINE_STATE_BYTES and self._merges:
            # One large state at a time: peers (or a stranger with push-pull access)
            # cannot pile up decodes of up to MAX_STATE_REGISTRATIONS each. Not
            # remembered, so the sender's next push-pull offers it again.
            return
        if not self._state_is_news(effect.state):
            return
        decoder = StateDecoder(effect.state)
        if len(effect.state) > INLINE_STATE_BYTES:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                task = loop.create_task(self._merge_in_slices(decoder))
                self._merges.add(task)
                task.add_done_callback(self._merges.discard)
                return
        decoder.decode_some(MAX_STATE_REGISTRATIONS)
        self._merge_and_publish(decoder.registrations, "a peer's ring state")

    def _state_is_news(self, state: bytes) -> bool:
        """False for a state equal to ours or to one merged lately (nothing to learn)."""
        if state == self.local_state():
            return False
        digest = hashlib.blake2b(state, digest_size=16).digest()
        if digest in self._merged_states:
            self._merged_states.move_to_end(digest)
            return False
        self._merged_states[digest] = None
        if len(self._merged_states) > REMEMBERED_STATES:
            self._merged_states.popitem(last=False)
        return True

    async def _merge_in_slices(self, decoder: StateDecoder) -> None:
        """Decodes a large peer state, then merges it, a slice at a time. Tombstones
        go first, so that additions beyond the cap are judged after removals, as
        one merge of the whole state would judge them."""
        while not decoder.done:
            decoder.decode_some(STATE_SLICE)
            await asyncio.sleep(0)
        ordered = sorted(decoder.registrations, key=lambda r: not r.removed)
        for start in range(0, len(ordered), STATE_SLICE):
            if start:
                await asyncio.sleep(0)
            self._merge_and_publish(ordered[start : start + STATE_SLICE], "a peer's ring state")

    def _merge_and_publish(self, registrations: list[Registration], source: str) -> None:
        if not registrations:
            return
        changed = self._merge(registrations, self._clock(), source)
        if changed is not None:
            self._persist_soon()
            self._publish(changed)

    def _merge(
        self, registrations: list[Registration], now: float, source: str
    ) -> list[str] | None:
        """Merges registrations into the directory; the rings that changed, or None
        when nothing was kept."""
        try:
            merge = self._directory.merge_registrations(registrations, now)
        except InvalidArgument:
            log.warning("registrations from %s cannot be placed on a ring; ignored", source)
            return None
        if merge.dropped:
            total = self._directory.registrations_dropped
            if total >= 2 * self._dropped_logged:
                self._dropped_logged = total
                log.warning(
                    "dropped %d registrations from %s: %d live ones are the cap "
                    "(%d dropped since start)",
                    merge.dropped,
                    source,
                    self._directory.max_registrations,
                    total,
                )
        return merge.changed if merge.accepted else None

    def local_state(self) -> bytes:
        """The registrations for a peer's push-pull, encoded once per change."""
        self._directory.expire(self._clock())
        version = self._directory.state_version
        if self._state_cache is None or self._state_cache[0] != version:
            self._state_cache = (version, encode_state(self._directory.registrations()))
        return self._state_cache[1]

    def _persist(self) -> None:
        """Writes the registrations now (without a loop, and at shutdown): a failure is
        logged, since gossip and peers' states can give them back."""
        if self._store is not None:
            self._persist_due = False
            try:
                self._store.save(self.local_state())
            except OSError as error:
                log.error("cannot write %s: %s", self._store.path, error.strerror or error)

    async def _store_local_change(self, registration: Registration, what: str) -> None:
        """Writes the registrations as they will be once `registration` is applied,
        before anything changes in memory or goes out: when the write fails the RPC
        fails (saying `what` was not stored) and the agent holds what a restart
        would read."""
        if self._store is None:
            return
        self._directory.expire(self._clock())
        key = (registration.ring, registration.id)
        # In (ring, id) order, as registrations() gives them: the entry is replaced in
        # place, or a new one inserted where it sorts.
        expected = [r for r in self._directory.registrations() if (r.ring, r.id) != key]
        bisect.insort(expected, registration, key=lambda r: (r.ring, r.id))
        try:
            await self._store.write_registrations(expected)
        except OSError as error:
            raise write_failure(f"{what} was not stored", self._store.path, error) from None

    def _persist_soon(self) -> None:
        """Writes the registrations within PERSIST_DELAY, off the loop: registrations
        learned from gossip arrive in bursts, and each write is O(registrations)."""
        if self._store is None or self._persist_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._persist()
            return
        self._persist_due = True
        loop.call_later(PERSIST_DELAY, self._persist_in_background)

    def _persist_in_background(self) -> None:
        if not self._persist_due or self._store is None:
            return
        self._persist_due = False
        self._store.save_in_background(self.local_state())

    def close(self) -> None:
        """Writes what is still pending and waits for the writer (at shutdown)."""
        for task in list(self._merges):
            task.cancel()
        if self._persist_due:
            self._persist()
        if self._store is not None:
            self._store.close()
        self.changes.close()

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
            settings=settings_to_proto(view.ring.settings),
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
        cap = self._directory.max_registrations
        if self._directory.live_registrations >= cap and not self._directory.is_registered(
            ring, node
        ):
            raise ResourceExhausted(
                f"at most {cap} registered nodes per cluster; remove unused ones"
            )
        async with self._local_changes:
            registration = self._directory.prepare(
                ring, request.address, request.port, weight, metadata
            )
            await self._store_local_change(registration, f"node {node} of ring {ring!r}")
            try:
                # A registration too large for one datagram is refused here, before
                # anything is kept in memory or sent.
                self._send(CHANNEL, encode_registration(registration))
            except ControlPlaneError:
                self._persist_soon()  # the file goes back to what memory holds
                raise
            self._directory.apply(registration, self._clock())
        self._publish([ring])
        view = self._directory.view(ring)
        return pb.AddNodeResponse(node=entry_to_proto(view.entry(node)), version=view.version)

    async def RemoveNode(
        self, request: pb.RemoveNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RemoveNodeResponse:
        ring = ring_name(request.ring)
        if not request.id:
            raise InvalidArgument.for_field("id", "must be a node id, address:port")
        async with self._local_changes:
            removal = self._directory.prepare_removal(ring, request.id)
            if removal is None:
                view = self._directory.view(ring)
                if any(e.id == request.id for e in view.entries):
                    raise FailedPrecondition(
                        f"node {request.id!r} comes from membership; remove the member's "
                        f"ring tag instead"
                    )
                raise NotFound(f"ring {ring!r} has no registered node {request.id!r}")
            await self._store_local_change(
                removal, f"the removal of node {request.id} from ring {ring!r}"
            )
            self._directory.apply(removal, self._clock())
            self._send(CHANNEL, encode_registration(removal))
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
