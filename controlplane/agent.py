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
import signal
import socket
from collections.abc import Sequence

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from controlplane.api.errors import ErrorMappingInterceptor
from controlplane.api.services import PUBLIC_SERVICES, PublicService, pending_servicer
from controlplane.config import AgentConfig

log = logging.getLogger("controlplane.agent")

# What each public service still lacks in this version; answered as UNIMPLEMENTED.
MISSING_FEATURES: dict[str, str] = {
    "Membership": "the membership layer is not part of this build yet",
    "ServerPool": "server pools are not part of this build yet",
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


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
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

    @property
    def service_names(self) -> list[str]:
        return [service.full_name for service in PUBLIC_SERVICES]

    def _servicer_for(self, service: PublicService) -> object:
        return pending_servicer(service, MISSING_FEATURES[service.name])

    async def start(self) -> None:
        config = self.config
        if _port_in_use(config.bind, config.port):
            raise AgentStartError(f"port {config.port} on {config.bind} is already in use")
        server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()], options=SERVER_OPTIONS)
        for service in PUBLIC_SERVICES:
            service.add_to_server(self._servicer_for(service), server)
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
        await server.start()
        self._server = server
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "agent %s serving on %s (profile %s, role %s)",
            config.node,
            config.listen_target,
            config.profile,
            config.role,
        )

    def request_stop(self) -> None:
        """Asks the agent to shut down gracefully (safe to call from a signal handler)."""
        self._stopping.set()

    async def stop(self) -> None:
        """Graceful shutdown: NOT_SERVING first, then let in-flight RPCs finish."""
        if self._server is None or self._stopped.is_set():
            return
        log.info("agent %s stopping (grace %.1fs)", self.config.node, self.config.shutdown_grace)
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.config.shutdown_grace)
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
