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
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from controlplane.errors import InvalidArgument, ResourceExhausted
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
# Pause before opening a stream again after it ended or failed, doubling.
RETRY_PAUSE = 1.0
RETRY_PAUSE_MAX = 30.0

ChannelFactory = Callable[[Address], grpc.aio.Channel]
ProbeNow = Callable[[str], None]


class AttendServer:
    """The serving side: holds each stream open, sending nothing, until the agent
    stops or the attendant goes away."""

    def __init__(self, limit: int = MAX_ATTENDERS) -> None:
        self._limit = limit
        self._open = 0
        self._released = asyncio.Event()

    @property
    def open_streams(self) -> int:
        return self._open

    async def attend(
        self, request: gossip_pb2.AttendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[gossip_pb2.AttendResponse]:
        if not valid_name(request.name):
            raise InvalidArgument.for_field("name", "must be a member name")
        if self._open >= self._limit:
            raise ResourceExhausted(f"at most {self._limit} members may attend this agent")
        self._open += 1
        try:
            # The attendant learns it is connected from the headers.
            await context.send_initial_metadata(())
            await self._released.wait()
        finally:
            self._open -= 1
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
        self._unsupported: set[str] = set()
        self._streams: dict[str, asyncio.Task[None]] = {}
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
                self._addresses[name] = member.address
            else:
                self._addresses.pop(name, None)
                # Back in the cluster later, it may run another version.
                self._unsupported.discard(name)
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
        return [
            name
            for name in itertools.islice(following, self._count)
            if name not in self._unsupported
        ]

    def _follow(self) -> None:
        if self._closed:
            return
        wanted = self._wanted()
        for name in list(self._streams):
            if name not in wanted:
                self._streams.pop(name).cancel()
        for name in wanted:
            if name not in self._streams:
                task = asyncio.create_task(self._attend(name), name=f"attend-{name}")
                self._streams[name] = task

    async def _attend(self, name: str) -> None:
        pause = RETRY_PAUSE
        while name in self._addresses and not self._closed:
            address = self._addresses[name]
            channel = self._channel_for(address)
            try:
                connected = await self._hold(channel, name)
            finally:
                await channel.close(None)
            if connected is None:
                # The member does not serve Attend: leave it to probing.
                self._unsupported.add(name)
                self._streams.pop(name, None)
                self._follow()
                return
            if connected:
                pause = RETRY_PAUSE
            if name in self._addresses and not self._closed:
                self.hints += 1
                log.debug("connection to %s closed; probing it now", name)
                self._probe_now(name)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_PAUSE_MAX)

    async def _hold(self, channel: grpc.aio.Channel, name: str) -> bool | None:
        """Holds one stream to `name` until it ends: True if it had been open, False
        if it could not be opened, None if the member does not serve Attend."""
        stub = gossip_pb2_grpc.GossipStub(channel)
        call = stub.Attend(gossip_pb2.AttendRequest(name=self._own))
        connected = False
        try:
            await call.initial_metadata()
            connected = True
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            log.debug("attending %s: %s", name, error.code().name)
        return connected

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._streams.values())
        self._streams.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
