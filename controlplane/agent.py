"""Composition root: config -> components -> gRPC server -> graceful shutdown.

The agent owns one asyncio event loop. It binds the gRPC server (public
services, standard health, reflection) on the configured address and port, marks
itself SERVING, and on SIGTERM or SIGINT goes NOT_SERVING, lets in-flight RPCs
finish for `shutdown_grace` seconds and returns exit status 0.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import signal
import socket
from collections.abc import Sequence

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from controlplane.api.errors import ErrorMappingInterceptor
from controlplane.api.membership import MembershipReads
from controlplane.api.server_pool import PoolRegistry, ServerPoolRpcs
from controlplane.api.services import PUBLIC_SERVICES, PublicService, pending_servicer
from controlplane.config import AgentConfig
from controlplane.gossip import PROFILES, GossipNode, Keyring
from controlplane.gossip.v1 import gossip_pb2_grpc
from controlplane.transport.pushpull import GossipServicer
from controlplane.transport.runtime import GossipRuntime

log = logging.getLogger("controlplane.agent")

# What each public service still lacks in this version; answered as UNIMPLEMENTED.
MISSING_FEATURES: dict[str, str] = {
    "Membership": "only ListMembers and GetLocalMember are part of this build",
    "ServerPool": "Heartbeat and ListClients are not part of this build yet",
    "Ring": "hash rings are not part of this build yet",
    "Keyring": "gossip encryption keys are not part of this build yet",
}

SERVER_OPTIONS: Sequence[tuple[str, int]] = (
    # gRPC enables SO_REUSEPORT by default on Linux, which would let a second agent
    # bind the same port silently and split traffic; a taken port must be an error.
    ("grpc.so_reuseport", 0),
    # Clients keep long Watch streams open while idle; allow their keepalive pings
    # (every 20 s, see docs/client.md) without treating them as abuse.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # Ping idle clients every 60 s so half-open connections are noticed.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)


class AgentStartError(RuntimeError):
    """The agent could not start (for example its port is taken)."""


# Retry-join: the first attempts come quickly so agents started together find each
# other fast, then settle at Serf's RetryInterval of 30 s.
RETRY_JOIN_INTERVAL = 1.0
LEAVE_PROPAGATION_TIMEOUT = 5.0  # Serf's BroadcastTimeout


def _port_in_use(host: str, port: int, kind: socket.SocketKind) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as probe:
        # Like the gRPC server, ignore connections lingering in TIME_WAIT: only a
        # live listener makes the port taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


class Agent:
    """One controlplane agent: a gRPC server plus (later) the gossip member."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self.runtime: GossipRuntime | None = None
        self.pools: PoolRegistry | None = None
        self._join_task: asyncio.Task[None] | None = None

    @property
    def service_names(self) -> list[str]:
        return [service.full_name for service in PUBLIC_SERVICES]

    def _servicer_for(
        self, service: PublicService, node: GossipNode, pools: PoolRegistry
    ) -> object:
        implemented = {
            "Membership": MembershipReads(node),
            "ServerPool": ServerPoolRpcs(pools),
        }.get(service.name)
        return pending_servicer(service, MISSING_FEATURES[service.name], implemented)

    def _gossip_node(self) -> GossipNode:
        config = self.config
        loop = asyncio.get_running_loop()
        return GossipNode(
            PROFILES[config.profile](),
            config.node,
            (config.advertise_address, config.port),
            # Production randomness: seeded from the OS; tests seed their own cores.
            rng=random.Random(),
            now=loop.time(),
            keyring=Keyring([key]) if (key := config.encryption_key) else None,
            label=config.cluster_label,
        )

    async def start(self) -> None:
        config = self.config
        for kind, label in ((socket.SOCK_STREAM, "TCP"), (socket.SOCK_DGRAM, "UDP")):
            if _port_in_use(config.bind, config.port, kind):
                raise AgentStartError(
                    f"port {config.port} on {config.bind} is already in use ({label})"
                )
        node = self._gossip_node()
        runtime = GossipRuntime(node)
        pools = PoolRegistry(asyncio.get_running_loop().time)
        server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()], options=SERVER_OPTIONS)
        for service in PUBLIC_SERVICES:
            service.add_to_server(self._servicer_for(service, node, pools), server)
        gossip_pb2_grpc.add_GossipServicer_to_server(
            GossipServicer(runtime.serve_push_pull), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        try:
            bound = server.add_insecure_port(config.listen_target)
        except RuntimeError as error:
            raise AgentStartError(f"cannot bind {config.listen_target}: {error}") from None
        if bound == 0:
            raise AgentStartError(f"cannot bind {config.listen_target}")
        try:
            runtime.open(config.bind, config.port)
        except OSError as error:
            raise AgentStartError(
                f"cannot bind UDP {config.listen_target}: {error.strerror}"
            ) from None
        await server.start()
        self._server = server
        self.runtime = runtime
        self.pools = pools
        pools.start()
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if config.join:
            # Membership is NOT_SERVING until the agent has reached the cluster.
            await self.health.set(
                "controlplane.v1.Membership", health_pb2.HealthCheckResponse.NOT_SERVING
            )
            self._join_task = asyncio.create_task(self._join(config.join))
        log.info(
            "agent %s serving on %s (profile %s, role %s)",
            config.node,
            config.listen_target,
            config.profile,
            config.role,
        )

    async def _join(self, addresses: Sequence[str]) -> None:
        assert self.runtime is not None
        await self.runtime.retry_join(addresses, self.config.port, RETRY_JOIN_INTERVAL)
        await self.health.set("controlplane.v1.Membership", health_pb2.HealthCheckResponse.SERVING)

    def request_stop(self) -> None:
        """Asks the agent to shut down gracefully (safe to call from a signal handler)."""
        self._stopping.set()

    async def stop(self) -> None:
        """Graceful shutdown: NOT_SERVING first, then let in-flight RPCs finish."""
        if self._server is None or self._stopped.is_set():
            return
        log.info("agent %s stopping (grace %.1fs)", self.config.node, self.config.shutdown_grace)
        await self.health.enter_graceful_shutdown()
        if self._join_task is not None:
            self._join_task.cancel()
        if self.runtime is not None:
            await self.runtime.leave(LEAVE_PROPAGATION_TIMEOUT)
        await self._server.stop(self.config.shutdown_grace)
        if self.pools is not None:
            await self.pools.close()
        if self.runtime is not None:
            await self.runtime.close()
        self._stopped.set()
        log.info("agent %s stopped", self.config.node)

    async def run(self) -> int:
        """Starts, serves until SIGTERM/SIGINT or `request_stop`, stops; returns 0."""
        loop = asyncio.get_running_loop()
        await self.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        try:
            await self._stopping.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await self.stop()
        return 0
