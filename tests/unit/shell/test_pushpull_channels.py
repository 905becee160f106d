"""controlplane/shell/pushpull.py: the push-pull client keeps a bounded number of
channels, the least recently used closed first."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
import grpc.aio

from controlplane.api.services import GOSSIP
from controlplane.shell.attend import AttendServer
from controlplane.shell.pushpull import GossipServicer, PushPullClient
from controlplane.testing.agents import free_port
from controlplane.wire.v1 import gossip_pb2, gossip_pb2_grpc

HOST = "127.0.0.1"


class RecordingClient(PushPullClient):
    """Remembers every channel it opened, by peer."""

    def __init__(self, max_channels: int) -> None:
        super().__init__(max_channels=max_channels)
        self.opened: list[tuple[tuple[str, int], grpc.aio.Channel]] = []

    def open_channel(
        self, dest: tuple[str, int], options: Sequence[tuple[str, int]] = ()
    ) -> grpc.aio.Channel:
        channel = super().open_channel(dest, options)
        self.opened.append((dest, channel))
        return channel


async def echo_server() -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    port = server.add_insecure_port(f"{HOST}:{free_port(HOST)}")

    async def push_pull(_source: tuple[str, int], frame: bytes) -> bytes:
        return frame

    GOSSIP.add_to_server(GossipServicer(push_pull, AttendServer(lambda _name: True)), server)
    await server.start()
    return server, port


async def is_closed(channel: grpc.aio.Channel) -> bool:
    try:
        await gossip_pb2_grpc.GossipStub(channel).PushPull(
            gossip_pb2.PushPullRequest(frame=b"x"), timeout=5
        )
    except grpc.aio.UsageError:
        return True
    return False


async def test_channels_beyond_the_bound_are_closed_least_recently_used_first() -> None:
    servers = [await echo_server() for _ in range(5)]
    peers = [(HOST, port) for _, port in servers]
    client = RecordingClient(max_channels=3)
    try:
        for peer in peers[:3]:
            assert await client.exchange(peer, b"state", timeout=5) == b"state"
        # Using the first again makes the second the least recently used.
        assert await client.exchange(peers[0], b"again", timeout=5) == b"again"
        assert len(client.opened) == 3
        for peer in peers[3:]:
            assert await client.exchange(peer, b"state", timeout=5) == b"state"
        assert client.cached_channels == 3
        opened = dict(client.opened)
        await asyncio.sleep(0)  # the retiring closes start
        assert await is_closed(opened[peers[1]])
        assert await is_closed(opened[peers[2]])
        assert not await is_closed(opened[peers[0]])
        # An evicted peer is reached again over a new channel.
        assert await client.exchange(peers[1], b"back", timeout=5) == b"back"
        assert [dest for dest, _ in client.opened].count(peers[1]) == 2
        assert client.cached_channels == 3
    finally:
        await client.close()
        for server, _ in servers:
            await server.stop(None)
