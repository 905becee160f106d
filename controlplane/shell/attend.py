"""Attendance: open streams to the next members in name order, and a probe out of
turn when one of them closes.

A crashed process's kernel closes its connections at once. Gossip cannot see
that: the first probe of a crashed member comes at its turn in some member's
probe round, after a median of about 0.65 s and up to a few seconds, most of the
spread of the time to detect it. So every agent keeps one idle gRPC stream
(`Gossip/Attend`, which sends nothing) to each of the `ATTENDED` members after it
in name order (wrapping around), and every member is attended by as many. When
a stream ends or cannot be opened, the agent asks the core to probe that member
now (`GossipNode.probe_now`); the core bounds such probes and leaves the rest to
the protocol: a member that answers is untouched, one that does not is suspected
and has Lifeguard's whole timeout to refute. A hung process or a lost network
closes nothing; those are found by probing, as before.

The streams cost nothing while idle but the server's keepalive ping (once a
minute) and a member event costs what changed: the attended members are
recomputed from a sorted list of names, and at most a few streams open or close.
A member that does not serve `Attend` (an older agent) is not asked again while it
stays in the cluster. An agent serves at most `MAX_ATTENDERS` streams at once.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from controlplane.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from controlplane.gossip import Address
from controlplane.gossip.names import valid_name
from controlplane.membership import MemberEvent, MemberStatus
from controlplane.wire.v1 import gossip_pb2, gossip_pb2_grpc

log = logging.getLogger("controlplane.gossip")

# Members each agent attends, and so about how many attend it: two, so that one
# restarting attendant does not leave a member unattended.
ATTENDED = 2
# Streams an agent serves at once: its own attendants and, while membership
# changes, those about to be replaced. More are refused (a stranger's flood).
MAX_ATTENDERS = 16
# Streams one member may hold at once: one, and its replacement while the old one
# is torn down.
PER_MEMBER = 2
# Pause before opening a stream again after it ended or failed, doubling.
RETRY_PAUSE = 1.0
RETRY_PAUSE_MAX = 30.0
# A member that does not serve Attend is asked again after this long (it may have
# been upgraded meanwhile).
UNSUPPORTED_PAUSE = 600.0
# The header an attended agent sends once it holds the stream: a failed call also
# "receives" initial metadata (empty), so only this tells an open stream apart.
HELD_HEADER = ("controlplane-attend", "held")
# The attending side pings an idle stream: a host that vanished without closing its
# connections (power loss, a partition) ends the stream within about a minute.
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)

ChannelFactory = Callable[[Address, Sequence[tuple[str, int]]], grpc.aio.Channel]
ProbeNow = Callable[[str], None]
# Whether a name is an alive member's (the layer's view).
IsAliveMember = Callable[[str], bool]


class _End(enum.Enum):
    """How a stream to an attended member ended."""

    HELD = "held, then ended"  # the member's connection closed: probe it
    FAILED = "could not be opened"  # probe it, retry ever more slowly
    REFUSED = "refused"  # it does not know us as alive yet: retry, no probe
    UNSUPPORTED = "not served"  # set aside for UNSUPPORTED_PAUSE


class AttendServer:
    """The serving side: holds each stream open, sending nothing, until the agent
    stops or the attendant goes away."""

    def __init__(self, is_alive_member: IsAliveMember, limit: int = MAX_ATTENDERS) -> None:
        self._is_alive_member = is_alive_member
        self._limit = limit
        self._open = 0
        self._by_member: dict[str, int] = {}
        self._released = asyncio.Event()

    @property
    def open_streams(self) -> int:
        return self._open

    async def attend(
        self, request: gossip_pb2.AttendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[gossip_pb2.AttendResponse]:
        if not valid_name(request.name):
            raise InvalidArgument.for_field("name", "must be a member name")
        # Only a member we know as alive may hold a slot, and at most PER_MEMBER of
        # them. The source address is not checked: an agent's calls may leave from
        # another address than the one it advertises (several addresses, NAT). A
        # stranger who knows members' names can still take slots; the most it does is
        # turn the hint off, and detection falls back to probing.
        if not self._is_alive_member(request.name):
            raise PermissionDenied(f"{request.name!r} is not an alive member")
        held = self._by_member.get(request.name, 0)
        if held >= PER_MEMBER:
            raise ResourceExhausted(f"{request.name!r} already holds {held} streams")
        if self._open >= self._limit:
            raise ResourceExhausted(f"at most {self._limit} members may attend this agent")
        self._open += 1
        self._by_member[request.name] = held + 1
        try:
            await context.send_initial_metadata((HELD_HEADER,))
            await self._released.wait()
        finally:
            self._open -= 1
            left = self._by_member.pop(request.name) - 1
            if left:
                self._by_member[request.name] = left
        return
        yield gossip_pb2.AttendResponse()  # never sent; makes this a stream handler

    def release(self) -> None:
        """Ends every stream (the agent is stopping)."""
        self._released.set()


class Attendance:
    """The attending side: follows member events, keeps a stream open to each of
    the `count` alive members after `own_name` in name order."""

    def __init__(
        self,
        own_name: str,
        channel_for: ChannelFactory,
        probe_now: ProbeNow,
        count: int = ATTENDED,
    ) -> None:
        self._own = own_name
        self._channel_for = channel_for
        self._probe_now = probe_now
        self._count = count
        self._names: list[str] = []  # alive members but ourselves, sorted
        self._addresses: dict[str, Address] = {}
        # name -> loop time until which it is not asked again (see UNSUPPORTED_PAUSE).
        self._unsupported: dict[str, float] = {}
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._recheck: asyncio.TimerHandle | None = None
        self._closed = False
        self.hints = 0

    @property
    def attended(self) -> list[str]:
        """The members attended now, in name order after ours."""
        return list(self._streams)

    def on_member_event(self, event: MemberEvent) -> None:
        for member in event.members:
            name = member.name
            if name == self._own:
                continue
            alive = member.status is MemberStatus.ALIVE
            index = bisect.bisect_left(self._names, name)
            present = index < len(self._names) and self._names[index] == name
            if alive and not present:
                self._names.insert(index, name)
            elif not alive and present:
                del self._names[index]
            if alive:
                if self._addresses.get(name, member.address) != member.address:
                    # Moved: the stream to the old address would never end.
                    self._retire(name)
                self._addresses[name] = member.address
            else:
                self._addresses.pop(name, None)
                # Back in the cluster later, it may run another version.
                self._unsupported.pop(name, None)
        self._follow()

    def _wanted(self) -> list[str]:
        names = self._names
        if not names or self._count <= 0:
            return []
        start = bisect.bisect_right(names, self._own)
        following = (names[(start + offset) % len(names)] for offset in range(len(names)))
        # A member that does not serve Attend is skipped, not replaced by the one after
        # it: among thousands of members that never attend (an older version, the fleet
        # benchmark's crowd) the agent must not try them all, one after another.
        now = asyncio.get_running_loop().time()
        return [
            name
            for name in itertools.islice(following, self._count)
            if self._unsupported.get(name, 0.0) <= now
        ]

    def _follow(self) -> None:
        if self._closed:
            return
        wanted = self._wanted()
        for name in list(self._streams):
            if name not in wanted:
                self._retire(name)
        for name in wanted:
            if name not in self._streams:
                task = asyncio.create_task(self._attend(name), name=f"attend-{name}")
                self._streams[name] = task

    def _retire(self, name: str) -> None:
        task = self._streams.pop(name, None)
        if task is not None:
            task.cancel()
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    def _set_aside(self, name: str) -> None:
        """`name` does not serve Attend: leave it to probing for a while, without
        trying the members after it instead."""
        loop = asyncio.get_running_loop()
        self._unsupported[name] = loop.time() + UNSUPPORTED_PAUSE
        self._streams.pop(name, None)
        if self._recheck is None:
            self._recheck = loop.call_later(UNSUPPORTED_PAUSE, self._recheck_set_aside)

    def _recheck_set_aside(self) -> None:
        self._recheck = None
        now = asyncio.get_running_loop().time()
        self._unsupported = {n: t for n, t in self._unsupported.items() if t > now}
        if self._unsupported:
            self._recheck = asyncio.get_running_loop().call_later(
                min(self._unsupported.values()) - now, self._recheck_set_aside
            )
        self._follow()

    async def _attend(self, name: str) -> None:
        pause = RETRY_PAUSE
        while name in self._addresses and not self._closed:
            address = self._addresses[name]
            channel = self._channel_for(address, CHANNEL_OPTIONS)
            try:
                end = await self._hold(channel, name)
            except Exception:
                # Not the stream's end (that is an RpcError): a bug here must not end
                # the attendance silently; it is logged and retried after the pause.
                log.exception("attending %s failed", name)
                end = _End.FAILED
            finally:
                await channel.close(None)
            if end is _End.UNSUPPORTED:
                self._set_aside(name)
                self._follow()
                return
            if end is _End.HELD:
                pause = RETRY_PAUSE
            # Refused: the member does not know us as alive yet (we joined a moment
            # ago); asked again later, and no reason to probe it.
            if end is not _End.REFUSED and name in self._addresses and not self._closed:
                self.hints += 1
                log.debug("connection to %s closed; probing it now", name)
                self._probe_now(name)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_PAUSE_MAX)

    async def _hold(self, channel: grpc.aio.Channel, name: str) -> _End:
        """Holds one stream to `name` until it ends, and says how it ended."""
        stub = gossip_pb2_grpc.GossipStub(channel)
        call = stub.Attend(gossip_pb2.AttendRequest(name=self._own))
        held = False
        try:
            # A failed call "receives" empty initial metadata: only the agent's header
            # says the stream is held.
            held = HELD_HEADER in tuple(await call.initial_metadata())
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as error:
            code = error.code()
            log.debug("attending %s: %s", name, code.name)
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return _End.UNSUPPORTED
            if code == grpc.StatusCode.PERMISSION_DENIED:
                return _End.REFUSED
        return _End.HELD if held else _End.FAILED

    async def close(self) -> None:
        self._closed = True
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        tasks = [*self._streams.values(), *self._retired]
        self._streams.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
