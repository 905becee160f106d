"""Push-pull anti-entropy and stream pings over the agent's gRPC port.

The server side is the internal `controlplane.gossip.v1.Gossip/PushPull` RPC,
which hands the peer's framed state to the core and returns the core's own, and
`Gossip/Ping`, memberlist's TCP fallback ping, answered by the core. The
client side keeps a channel to each of the peers it exchanged with most
recently, 32 at most (TLS when the agent's `verify_outgoing` says so, see
`controlplane.shell.tls`), and turns a failed exchange into `None`, which the
core counts and retries on its own schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from controlplane.config import format_host_port
from controlplane.errors import PermissionDenied
from controlplane.gossip import PushPullRejected, StreamPingRefused
from controlplane.wire.v1 import gossip_pb2, gossip_pb2_grpc

if TYPE_CHECKING:
    from controlplane.shell.attend import AttendServer

log = logging.getLogger("controlplane.shell")

Address = tuple[str, int]
ServePushPull = Callable[[Address, bytes], Awaitable[bytes]]
AnswerPing = Callable[[bytes], bytes]

# Full-state exchanges of large clusters exceed gRPC's 4 MiB default; the core
# refuses states above its own max_push_pull_size (16 MiB) anyway.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
# Seconds a channel replaced by a TLS reload, or dropped from the cache, keeps
# serving the exchange in flight.
RETIRE_GRACE = 30.0
# Channels kept open to peers, the least recently used closed first. Push-pull
# picks a random member each round, so in a large cluster a channel is rarely used
# twice and an unbounded cache would end up holding one idle connection to every
# member it ever exchanged with (memberlist opens a connection per exchange and
# closes it). 32 covers every peer of a small cluster and the stream pings of a
# few probe rounds of a large one.
MAX_CACHED_CHANNELS = 32


def peer_address(peer: str) -> Address:
    """Parses grpc's "ipv4:1.2.3.4:5" / "ipv6:[::1]:5" peer strings."""
    _, _, rest = peer.partition(":")
    host, _, port = rest.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return rest, 0


class GossipServicer(gossip_pb2_grpc.GossipServicer):
    """Serves PushPull and Ping by delegating to the runtime that owns the core, and
    Attend (shell/attend.py)."""

    def __init__(
        self, serve: ServePushPull, attend: AttendServer, answer_ping: AnswerPing | None = None
    ) -> None:
        self._serve = serve
        self._attend = attend
        self._answer_ping = answer_ping

    async def Attend(
        self, request: gossip_pb2.AttendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[gossip_pb2.AttendResponse]:
        async for response in self._attend.attend(request, context):
            yield response

    async def PushPull(
        self, request: gossip_pb2.PushPullRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gossip_pb2.PushPullResponse:
        try:
            frame = await self._serve(peer_address(context.peer()), request.frame)
        except PushPullRejected as error:
            # Wrong key, wrong label or garbage: the peer is not of this cluster.
            raise PermissionDenied(f"push-pull refused: {error}") from None
        return gossip_pb2.PushPullResponse(frame=frame)

    async def Ping(
        self, request: gossip_pb2.PingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gossip_pb2.PingResponse:
        if self._answer_ping is None:
            raise PermissionDenied("stream ping refused: this agent does not answer pings")
        try:
            frame = self._answer_ping(request.frame)
        except StreamPingRefused as error:
            raise PermissionDenied(str(error)) from None
        return gossip_pb2.PingResponse(frame=frame)


class PushPullClient:
    """Runs push-pull exchanges against peers, one cached channel per peer.

    `credentials` (None: plaintext) and `options` (e.g. the server name expected
    under verify_server_hostname) apply to every channel; `set_credentials` makes
    later exchanges use new ones (a TLS reload). At most `max_channels` stay
    cached, the least recently used retired first."""

    def __init__(
        self,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, str]] = (),
        max_channels: int = MAX_CACHED_CHANNELS,
    ) -> None:
        self._channels: OrderedDict[Address, grpc.aio.Channel] = OrderedDict()
        self._max_channels = max_channels
        self._credentials = credentials
        self._options = (*CHANNEL_OPTIONS, *options)
        # Channels replaced by a reload, closed once their exchanges had time to end.
        self._retiring: set[asyncio.Task[None]] = set()
        # Told (peer, status details) when a peer refuses our state: another key or label.
        self.on_refused: Callable[[Address, str], None] | None = None

    @property
    def cached_channels(self) -> int:
        return len(self._channels)

    def _channel(self, dest: Address) -> grpc.aio.Channel:
        channel = self._channels.get(dest)
        if channel is not None:
            self._channels.move_to_end(dest)
            return channel
        if len(self._channels) >= self._max_channels:
            _, oldest = self._channels.popitem(last=False)
            self._retire(oldest)
        channel = self._channels[dest] = self.open_channel(dest)
        return channel

    def _retire(self, channel: grpc.aio.Channel) -> None:
        """Closes `channel` once an exchange in flight on it had time to end."""
        task = asyncio.create_task(channel.close(RETIRE_GRACE))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def open_channel(
        self, dest: Address, options: Sequence[tuple[str, int]] = ()
    ) -> grpc.aio.Channel:
        """A new channel to a peer's gRPC port, with the current credentials and
        `options` besides the usual ones; the caller closes it (Attend streams hold
        one each, shell/attend.py)."""
        target = format_host_port(dest[0], dest[1])
        every = (*self._options, *options)
        if self._credentials is None:
            return grpc.aio.insecure_channel(target, options=every)
        return grpc.aio.secure_channel(target, self._credentials, options=every)

    def set_credentials(self, credentials: grpc.ChannelCredentials | None) -> None:
        """Later exchanges connect with `credentials`; cached channels are dropped,
        each closed after a grace that lets an exchange in flight finish."""
        self._credentials = credentials
        channels, self._channels = list(self._channels.values()), OrderedDict()
        for channel in channels:
            self._retire(channel)

    async def exchange(self, dest: Address, frame: bytes, timeout: float) -> bytes | None:
        stub = gossip_pb2_grpc.GossipStub(self._channel(dest))
        try:
            response = await stub.PushPull(gossip_pb2.PushPullRequest(frame=frame), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            log.debug("push-pull with %s failed: %s", dest, error.code().name)
            if error.code() == grpc.StatusCode.PERMISSION_DENIED and self.on_refused is not None:
                self.on_refused(dest, error.details() or "")
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                # Drop the channel so a restarted peer on the same address is reached
                # with a fresh connection instead of a backed-off one.
                await self._forget(dest)
            return None
        return bytes(response.frame)

    async def ping(self, dest: Address, frame: bytes, timeout: float) -> bytes | None:
        """A stream ping (memberlist's TCP fallback): the peer's framed ack, or None when
        the call failed or took longer than ``timeout``."""
        stub = gossip_pb2_grpc.GossipStub(self._channel(dest))
        try:
            response = await stub.Ping(gossip_pb2.PingRequest(frame=frame), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            log.debug("stream ping of %s failed: %s", dest, error.code().name)
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                await self._forget(dest)
            return None
        return bytes(response.frame)

    async def _forget(self, dest: Address) -> None:
        channel = self._channels.pop(dest, None)
        if channel is not None:
            await channel.close(None)

    async def close(self) -> None:
        for dest in list(self._channels):
            await self._forget(dest)
        for task in list(self._retiring):
            task.cancel()
