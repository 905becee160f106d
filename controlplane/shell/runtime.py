"""Drives one sans-IO gossip core on the running asyncio loop.

The runtime is the only place where the core meets real time and real sockets:
it feeds datagrams and push-pull frames in with `time.monotonic()`, keeps
exactly one timer armed at the core's next deadline, and carries the effects
out: datagrams to the UDP endpoint, push-pull exchanges to gRPC tasks, member
events to subscribers. It holds no protocol logic of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from controlplane.config import format_host_port
from controlplane.gossip import (
    NameConflict,
    PushPullRejected,
    ReachedOnlyByStream,
    SendPacket,
    StartPushPull,
    StartStreamPing,
)
from controlplane.gossip.direct import DirectFrameError, is_direct, open_direct, seal_direct
from controlplane.gossip.keyring import Keyring
from controlplane.membership import (
    ChannelDelivery,
    ChannelStateReceived,
    EventType,
    MemberEvent,
    Membership,
    PushPullMerge,
    SnapshotRecord,
    UserEvent,
)
from controlplane.membership import Effect as MembershipEffect
from controlplane.shell.deadline import DeadlineTimer
from controlplane.shell.pushpull import PushPullClient
from controlplane.shell.refusals import (
    EXCHANGES,
    PACKETS,
    RefusalReport,
    changed_reason,
    mismatch_counts,
    refusal_reason,
)
from controlplane.shell.snapshot import SnapshotFile
from controlplane.shell.udp import UdpEndpoint

log = logging.getLogger("controlplane.gossip")

Address = tuple[str, int]
Event = MemberEvent | UserEvent
EventListener = Callable[[Event], None]
ChannelHandler = Callable[[ChannelDelivery | ChannelStateReceived], None]
ConflictHandler = Callable[[NameConflict], None]
# A direct datagram's opened payload, with its source address.
DirectHandler = Callable[[Address, bytes], None]


# A merge slice aims at this much loop time; its size in the layer's cost units (a
# change costs more than a known record) adapts to the measured time. The maximum is
# about 8 ms of known records, so one slice of news after a run of known records
# cannot hold the loop much past the target before the size adapts.
MERGE_SLICE_SECONDS = 0.004
MERGE_SLICE_MIN = 16
MERGE_SLICE_MAX = 2048
# Member events of one batch are logged by name up to this many, then counted.
LOGGED_NAMES_MAX = 8
# A member reached only over TCP is named in the log at most this often (seconds), and at
# most this many such members are remembered between two clean-ups.
UDP_LOST_REPORT_INTERVAL = 60.0
UDP_LOST_REPORTS_KEPT = 256


class SliceSize:
    """How many items a merge slice takes: halved when a slice took longer than
    `target` seconds, doubled when it took less than a quarter of it."""

    def __init__(
        self,
        target: float = MERGE_SLICE_SECONDS,
        minimum: int = MERGE_SLICE_MIN,
        maximum: int = MERGE_SLICE_MAX,
    ) -> None:
        self.target = target
        self.minimum = minimum
        self.maximum = maximum
        self.size = minimum * 4

    def measured(self, elapsed: float) -> None:
        if elapsed > self.target:
            self.size = max(self.minimum, self.size // 2)
        elif elapsed < self.target / 4:
            self.size = min(self.maximum, self.size * 2)


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """Splits "host", "host:port", "[v6]:port" or a bare IPv6 address."""
    text = text.strip()
    if not text:
        raise ValueError("address must not be empty")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    port = int(port_text) if port_text else default_port
    if not host or not 1 <= port <= 65535:
        raise ValueError(f"address {text!r} must be host or host:port with a port 1-65535")
    return host, port


async def resolve(text: str, default_port: int) -> list[Address]:
    """Resolves a join address (names included) to socket addresses."""
    host, port = parse_address(text, default_port)
    with contextlib.suppress(ValueError):
        return [(str(ipaddress.ip_address(host)), port)]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    return list(dict.fromkeys((str(info[4][0]), int(info[4][1])) for info in infos))


def _text(address: Address) -> str:
    return format_host_port(address[0], address[1])


class GossipRuntime:
    """One gossip member, live: membership layer + UDP + push-pull client + timer."""

    def __init__(
        self,
        layer: Membership,
        push_pull: PushPullClient | None = None,
        snapshot: SnapshotFile | None = None,
        *,
        keyring: Keyring | None = None,
        label: str = "",
    ) -> None:
        self.layer = layer
        # The gossip keyring and label (the same objects the core seals with): direct
        # datagrams are sealed with them, and opened once before they reach their
        # subsystem.
        self._keyring = keyring
        self._label = label
        self._snapshot = snapshot
        self.udp = UdpEndpoint(self._on_datagram)
        self._push_pull = push_pull or PushPullClient()
        self._push_pull.on_refused = self._on_refused_by_peer
        # Key and label mismatches, named in the log at a bounded rate.
        self.refusals = RefusalReport()
        self._conflict_handlers: list[ConflictHandler] = []
        self._listeners: list[EventListener] = []
        self._channel_handlers: dict[str, ChannelHandler] = {}
        # Direct datagrams (gossip/direct.py) go to the subsystem of their channel, never
        # to the gossip core; refused ones are counted by reason (frame, unknown_channel).
        self._direct_handlers: dict[str, DirectHandler] = {}
        self.direct_dropped: Counter[str] = Counter()
        self._timer = DeadlineTimer(self._on_timer)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slices = SliceSize()
        # Members last named in the UDP-lost warning, and when (_warn_udp_lost).
        self._udp_lost_reported: dict[str, float] = {}

    # ---------------------------------------------------------------- lifecycle

    def open(self, host: str, port: int) -> None:
        """Binds the UDP endpoint and arms the first timer."""
        self._loop = asyncio.get_running_loop()
        self.udp.open(host, port)
        self._reschedule()

    async def close(self) -> None:
        self._closed = True
        self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.udp.close()
        await self._push_pull.close()
        if self._snapshot is not None:
            self._snapshot.close()

    def subscribe(self, listener: EventListener) -> None:
        """Calls `listener` with every member and user event the layer emits."""
        self._listeners.append(listener)

    def on_name_conflict(self, handler: ConflictHandler) -> None:
        """Calls `handler` when a member at another address claims this member's name."""
        self._conflict_handlers.append(handler)

    def on_channel(
        self,
        channel: str,
        handler: ChannelHandler,
        state_provider: Callable[[], bytes] | None = None,
    ) -> None:
        """Routes a subsystem channel's messages and peer states to `handler`."""
        self.layer.add_channel(channel, state_provider)
        self._channel_handlers[channel] = handler

    def send(self, channel: str, payload: bytes) -> None:
        """Broadcasts a subsystem message to every other member."""
        self.layer.send(channel, payload, self.now)
        self._reschedule()

    @property
    def now(self) -> float:
        """The core's clock: asyncio's own loop reads the same one; uvloop's
        `loop.time()` is whole milliseconds, too coarse for a LAN's round trips."""
        assert self._loop is not None, "runtime is not open"
        return time.monotonic()

    # ------------------------------------------------------------------ inputs

    def on_direct(self, channel: str, handler: DirectHandler) -> None:
        """Routes direct datagrams (``gossip/direct.py``) of `channel` to `handler`, with
        the payload already opened (authenticated and decrypted when keyed)."""
        self._direct_handlers[channel] = handler

    def _on_datagram(self, source: Address, data: bytes) -> None:
        if self._closed:
            return
        if self._direct_handlers and is_direct(data):
            self._on_direct(source, data)
            return
        dropped = self.layer.node.stats.dropped
        before = mismatch_counts(dropped)
        self.apply(self.layer.receive_packet(source, data, self.now))
        reason = changed_reason(before, mismatch_counts(dropped))
        if reason is not None:
            self._report(self.refusals.refused(PACKETS, reason, _text(source), self.now))

    def send_direct(self, channel: str, dest: Address, payload: bytes) -> None:
        """Sends `payload` to the member at `dest` as one direct datagram of `channel`,
        sealed as gossip is (label, and the primary key when keyed)."""
        self.udp.send(dest, seal_direct(channel, payload, self._label, self._keyring))

    def _on_direct(self, source: Address, data: bytes) -> None:
        try:
            channel, payload = open_direct(data, self._label, self._keyring)
        except DirectFrameError as error:
            self.direct_dropped["frame"] += 1
            log.debug("dropped a direct datagram from %s: %s", _text(source), error)
            return
        handler = self._direct_handlers.get(channel)
        if handler is None:
            self.direct_dropped["unknown_channel"] += 1
            return
        handler(source, payload)

    def probe_now(self, name: str) -> None:
        """Probes member `name` out of turn: its connection to us closed
        (shell/attend.py). The core decides whether the hint is worth a probe."""
        if not self._closed:
            self.apply(self.layer.probe_now(name, self.now))

    def _on_refused_by_peer(self, peer: Address, details: str) -> None:
        if not self._closed:
            line = self.refusals.refused_by_peer(refusal_reason(details), _text(peer), self.now)
            self._report(line)

    @staticmethod
    def _report(line: str | None) -> None:
        if line is not None:
            log.warning("%s", line)

    async def serve_push_pull(self, source: Address, frame: bytes) -> bytes:
        """The gRPC PushPull handler's entry into the core: merge the peer's state a
        slice at a time, then answer with ours. Raises PushPullRejected."""
        try:
            job = self.layer.open_push_pull(frame)
        except PushPullRejected as error:
            self._report(self.refusals.refused(EXCHANGES, error.reason, source[0], self.now))
            raise
        await self._merge(job)
        return self.layer.push_pull_reply()

    async def _merge(self, job: PushPullMerge) -> None:
        """Merges a push-pull state in slices of about MERGE_SLICE_SECONDS each,
        yielding to the loop between slices so that RPCs, probes and timers keep
        their latency while thousands of members are merged."""
        while not job.done and not self._closed:
            started = time.perf_counter()
            self.apply(self.layer.merge_some(job, self.now, self._slices.size))
            self._slices.measured(time.perf_counter() - started)
            if not job.done:
                await asyncio.sleep(0)

    def _on_timer(self) -> None:
        if self._closed:
            return
        try:
            self.apply(self.layer.tick(self.now))
        finally:
            # Whatever happened, the next deadline must stay armed.
            self._reschedule()

    # ----------------------------------------------------------------- effects

    def apply(self, effects: Iterable[MembershipEffect]) -> None:
        """Carries out the layer's effects: packets, exchanges, snapshot lines, events.

        Consecutive member events of one type become one event listing every member,
        as a coalesced Serf event does: a merge that learns thousands of members
        reaches listeners and watchers as a few events, not thousands."""
        batch: list[MemberEvent] = []
        for effect in effects:
            if isinstance(effect, MemberEvent):
                if batch and batch[0].type is not effect.type:
                    self._publish_members(batch)
                    batch = []
                batch.append(effect)
                continue
            # Packets, exchanges and snapshot lines do not reach listeners, so they do not
            # end a run of member events; user events and channel messages do, to keep order.
            if isinstance(effect, SendPacket):
                self.udp.send(effect.dest, effect.data)
                continue
            if isinstance(effect, StartPushPull):
                self._spawn(self._run_push_pull(effect))
                continue
            if isinstance(effect, StartStreamPing):
                self._spawn(self._run_stream_ping(effect))
                continue
            if isinstance(effect, ReachedOnlyByStream):
                self._warn_udp_lost(effect)
                continue
            if isinstance(effect, SnapshotRecord):
                if self._snapshot is not None:
                    self._snapshot.write(effect)
                continue
            if isinstance(effect, NameConflict):
                for on_conflict in self._conflict_handlers:
                    on_conflict(effect)
                continue
            if batch:
                self._publish_members(batch)
                batch = []
            if isinstance(effect, ChannelDelivery | ChannelStateReceived):
                handler = self._channel_handlers.get(effect.channel)
                if handler is not None:
                    try:
                        handler(effect)
                    except Exception:
                        # A subscriber's callback, not the core: strict mode
                        # (GossipConfig.strict) does not apply. Re-raising here would
                        # only abandon the rest of this batch of effects (packets,
                        # push-pulls, other subscribers) inside a loop callback,
                        # where asyncio logs it anyway; logged, it stays visible.
                        log.exception("channel %s handler failed", effect.channel)
            else:
                self._publish(effect)
        if batch:
            self._publish_members(batch)
        self._reschedule()

    def _publish_members(self, batch: list[MemberEvent]) -> None:
        if len(batch) == 1:
            event = batch[0]
        else:
            event = MemberEvent(batch[0].type, tuple(m for e in batch for m in e.members))
        # Updates (tag changes) are frequent and routine: at debug, the others at info.
        level = logging.DEBUG if event.type is EventType.MEMBER_UPDATE else logging.INFO
        if log.isEnabledFor(level):
            names = [member.name for member in event.members[:LOGGED_NAMES_MAX]]
            more = len(event.members) - len(names)
            log.log(
                level,
                "%s: %s%s",
                event.type.name.lower().replace("_", "-"),
                ", ".join(names),
                f" and {more} more" if more > 0 else "",
            )
        self._publish(event)

    def _publish(self, effect: Event) -> None:
        for listener in self._listeners:
            try:
                listener(effect)
            except Exception:
                # A subscriber's callback, not the core: one listener's bug must not
                # keep the event from the others; strict mode does not apply (see
                # apply).
                log.exception("event listener failed on %s", type(effect).__name__)

    def _reschedule(self) -> None:
        if self._closed or self._loop is None:
            return
        self._timer.arm(self._loop, self.layer.next_deadline())

    def _spawn(self, coroutine: asyncio.Future[None] | object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_push_pull(self, effect: StartPushPull) -> bool:
        timeout = self.layer.node.config.push_pull_timeout
        response = await self._push_pull.exchange(effect.dest, effect.request, timeout)
        if self._closed:
            return response is not None
        job = self.layer.open_push_pull_response(effect.dest, response)
        if job is not None:
            await self._merge(job)
        self._reschedule()
        return job is not None

    async def _run_stream_ping(self, effect: StartStreamPing) -> None:
        response = await self._push_pull.ping(effect.dest, effect.request, effect.timeout)
        if self._closed:
            return
        self.apply(self.layer.stream_ping_response(effect.seq_no, response, self.now))
        self._reschedule()

    def answer_stream_ping(self, request: bytes) -> bytes:
        """The gRPC Ping handler's entry into the core; raises StreamPingRefused."""
        return self.layer.answer_stream_ping(request)

    def _warn_udp_lost(self, effect: ReachedOnlyByStream) -> None:
        """memberlist's warning, at most once per member per UDP_LOST_REPORT_INTERVAL: a
        member that only answers over the stream port is probed that way every round."""
        now = self.now
        if now < self._udp_lost_reported.get(effect.name, -math.inf) + UDP_LOST_REPORT_INTERVAL:
            return
        reported = self._udp_lost_reported
        if len(reported) >= UDP_LOST_REPORTS_KEPT:
            horizon = now - UDP_LOST_REPORT_INTERVAL
            reported = {name: at for name, at in reported.items() if at > horizon}
            # Still full (UDP lost to very many members at once): forget the oldest; at
            # worst a member is named again before its minute is over.
            for name in list(reported)[: len(reported) - UDP_LOST_REPORTS_KEPT + 1]:
                del reported[name]
            self._udp_lost_reported = reported
        reported.pop(effect.name, None)  # re-inserted last: the dict stays oldest first
        reported[effect.name] = now
        log.warning(
            "member %s (%s) answered over TCP but not over UDP: UDP between the two is lost "
            "or filtered (check firewalls for UDP port %d)",
            effect.name,
            _text(effect.address),
            effect.address[1],
        )

    # ------------------------------------------------------------- operations

    async def _resolve_seeds(
        self, addresses: Sequence[str], default_port: int
    ) -> tuple[list[Address], bool]:
        """Resolved seeds other than this agent, and whether every address resolved."""
        seeds: list[Address] = []
        all_resolved = True
        for text in addresses:
            try:
                seeds.extend(await resolve(text, default_port))
            except (OSError, ValueError) as error:
                all_resolved = False
                log.warning("cannot resolve join address %r: %s", text, error)
        # Every agent of a cluster may be given the same seed list, itself included.
        own = {self.layer.node.address, self.udp.local_address}
        return [seed for seed in dict.fromkeys(seeds) if seed not in own], all_resolved

    async def join(
        self, addresses: Sequence[str], default_port: int, *, replay: bool = False
    ) -> int:
        """Full state exchange with every address; returns how many answered."""
        seeds, _ = await self._resolve_seeds(addresses, default_port)
        if not seeds:
            return 0
        return await self._exchange_all(self.layer.join(seeds, self.now, replay=replay))

    async def rejoin(self) -> int:
        """Joins the members the snapshot remembers; returns how many answered."""
        return await self._exchange_all(self.layer.rejoin(self.now))

    async def _exchange_all(self, effects: Sequence[MembershipEffect]) -> int:
        exchanges = [
            self._run_push_pull(effect) for effect in effects if isinstance(effect, StartPushPull)
        ]
        self.apply(effect for effect in effects if not isinstance(effect, StartPushPull))
        results = await asyncio.gather(*exchanges, return_exceptions=True)
        self._reschedule()
        return sum(1 for result in results if result is True)

    async def retry_join(
        self,
        addresses: Sequence[str],
        default_port: int,
        first_interval: float,
        max_interval: float = 30.0,
        max_attempts: int = 0,
    ) -> int | None:
        """Joins until one address answers (0 attempts = forever), backing off from
        `first_interval` to `max_interval`; returns how many answered, or None when
        `max_attempts` ran out. When every address is this agent's own, there is
        nobody to join: it is the cluster's first member (0)."""
        interval = first_interval
        attempt = 0
        while not self._closed:
            seeds, all_resolved = await self._resolve_seeds(addresses, default_port)
            if not seeds and all_resolved:
                return 0
            attempt += 1
            contacted = await self.join(addresses, default_port)
            if contacted:
                log.info("joined the cluster through %d of %d addresses", contacted, len(addresses))
                return contacted
            if max_attempts and attempt >= max_attempts:
                return None
            log.warning("join attempt %d reached no member; retrying in %.1fs", attempt, interval)
            await asyncio.sleep(interval)
            interval = min(interval * 2, max_interval)
        return 0

    async def leave(self) -> None:
        """Announces a graceful leave and waits until the layer says it has spread
        (bounded by Serf's BroadcastTimeout plus LeavePropagateDelay)."""
        self.apply(self.layer.leave(self.now))
        while not self.layer.leave_done(self.now):
            await asyncio.sleep(self.layer.node.config.gossip_interval)
            self.apply(self.layer.tick(self.now))
