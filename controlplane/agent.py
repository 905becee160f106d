"""Composition root: config -> components -> gRPC server -> graceful shutdown.

The agent owns one asyncio event loop. It builds the membership layer (which
owns the gossip core), binds UDP gossip and the gRPC server on one port, serves
the public services with standard health and reflection, and rejoins the members
of its snapshot and the `--join` addresses. Its components are built in one step,
from the configuration, by `build_components` (a frozen `Components`, no part
optional); every problem with the configuration or a file read at start raises
`ConfigError`, which the command line reports in one line (exit 2).

Stopping (SIGTERM, SIGINT or the Leave RPC) is graceful, in this order: health
goes NOT_SERVING and the member is tagged `draining`, so heartbeating clients
move to other servers; after `drain_period` the agent leaves the cluster and
waits for the leave to spread; then in-flight RPCs get `shutdown_grace` seconds
and the process exits 0.

SIGHUP reloads the TLS certificate, key and CA for new connections
(`controlplane.shell.tls`); open connections keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import os
import platform
import random
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from controlplane.api.auth import AccessPolicy, ApiToken, configured_tokens, load_tokens_file
from controlplane.api.heartbeat import (
    API_VERSION_TAG,
    DATACENTER_TAG,
    DRAINING_TAG,
    ROLE_TAG,
    HeartbeatRpcs,
)
from controlplane.api.hub import EventHub
from controlplane.api.keyring import CHANNEL as KEYRING_CHANNEL
from controlplane.api.keyring import KeyringFile, KeyringService
from controlplane.api.membership import Event, LeaderRpcs, MembershipService, leader_address
from controlplane.api.queries import QueryRpcs
from controlplane.api.reflection import add_reflection
from controlplane.api.ring import CHANNEL as RING_CHANNEL
from controlplane.api.ring import RegistrationStore, RingService
from controlplane.api.server_pool import (
    AGENT_API_VERSION,
    PoolRegistry,
    ServerPoolRpcs,
    tls_health_ping,
)
from controlplane.api.servicers import (
    KeyringServicer,
    MembershipServicer,
    RingServicer,
    ServerPoolServicer,
)
from controlplane.api.services import (
    GOSSIP,
    KEYRING,
    MEMBERSHIP,
    PUBLIC_SERVICES,
    RING,
    SERVER_POOL,
    generic_only,
)
from controlplane.config import LOG_LEVELS, AgentConfig, format_host_port
from controlplane.configerror import ConfigError
from controlplane.datadir import check_data_dir
from controlplane.election import Election, ElectionConfig, LeaderView
from controlplane.errors import ControlPlaneError, InvalidArgument, Unavailable
from controlplane.gossip import PROFILES, Keyring, NameConflict
from controlplane.heartbeat.tracker import HeartbeatTracker
from controlplane.logformat import set_level as set_log_level
from controlplane.membership import MemberEvent, Membership, MembershipConfig, MemberStatus
from controlplane.rings.directory import RingDirectory
from controlplane.shell.attend import Attendance, AttendServer
from controlplane.shell.election import RANK_TAG, ElectionDriver, EpochStore, new_life
from controlplane.shell.eventloop import describe_running_loop
from controlplane.shell.heap import HeapSettler
from controlplane.shell.logstream import LogStream
from controlplane.shell.looplag import LoopLagProbe
from controlplane.shell.pushpull import MAX_MESSAGE_BYTES, GossipServicer, PushPullClient
from controlplane.shell.queries import QueryDriver, QueryHandlers
from controlplane.shell.runtime import GossipRuntime
from controlplane.shell.snapshot import SnapshotFile, read_snapshot, snapshot_path
from controlplane.shell.tls import AgentTls
from controlplane.v1 import membership_pb2

if TYPE_CHECKING:
    from controlplane.shell.metrics import AgentMetrics
    from controlplane.shell.metrics_http import MetricsListener

log = logging.getLogger("controlplane.agent")

SERVER_OPTIONS: Sequence[tuple[str, int]] = (
    # Push-pull exchanges of large clusters exceed gRPC's 4 MiB default; the client
    # side allows the same (shell/pushpull.py). gRPC applies these per server, not
    # per service: the public services refuse requests over 4 MiB themselves
    # (api/services.py) and page their lists so that responses stay under 4 MiB.
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
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


class JoinFailed(Exception):
    """The agent gave up joining after retry_max attempts (exit status 1)."""


class NodeNameTaken(ConfigError):
    """Another member already has this agent's node name: this agent stopped."""


# Seconds between two warnings about the same member claiming this agent's name.
CONFLICT_WARN_EVERY = 30.0
# Settings a SIGHUP applies; the TLS files are read again from the same paths.
RELOADABLE = frozenset({"log_level", "tags"})


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


@functools.cache
def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("controlplane")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


def _log_level(name: str) -> int:
    return int(getattr(logging, name.upper()))


def _resident_bytes() -> int:
    """The process's resident memory now (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def agent_tags(config: AgentConfig) -> dict[str, str]:
    """The member's tags: the configured ones plus the agent's role and API version."""
    tags = {
        ROLE_TAG: config.role,
        API_VERSION_TAG: str(AGENT_API_VERSION).removeprefix("v"),
        RANK_TAG: str(config.rank),
    }
    tags.update(config.tags)
    if config.datacenter:
        tags[DATACENTER_TAG] = config.datacenter
    return tags


@dataclass(frozen=True, slots=True)
class AgentHooks:
    """What the components call back into the agent that owns them."""

    events: EventHub[Event]
    leader_changes: EventHub[LeaderView | None]
    heap: HeapSettler
    # Drain, leave, then stop the agent (the Leave RPC).
    leave: Callable[[], Awaitable[None]]
    on_name_conflict: Callable[[NameConflict], None]
    # The answer to GetInfo (Agent.describe).
    describe: Callable[[], membership_pb2.GetInfoResponse]
    # The agent's log lines, for Monitor (Agent.monitor).
    monitor: Callable[
        [membership_pb2.MonitorRequest], AsyncIterator[membership_pb2.MonitorResponse]
    ]
    # Counts RPCs, member events and leader changes; None when metrics are off.
    metrics: AgentMetrics | None = None


@dataclass(frozen=True, slots=True)
class Components:
    """Everything a started agent runs, built together from its configuration by
    `build_components`: the agent has all of them or (before it starts) none."""

    tls: AgentTls
    # The API tokens (names and scopes are logged at start); empty without tokens.
    api_tokens: tuple[ApiToken, ...]
    # Whether gossip is sealed with a keyring (--encrypt or the keyring file).
    encrypted: bool
    layer: Membership
    runtime: GossipRuntime
    push_pull: PushPullClient
    pools: PoolRegistry
    rings: RingService
    keys: KeyringService
    election: ElectionDriver
    # Serf queries: asked through the API, answered by handlers and watching clients.
    queries: QueryDriver
    heartbeats: HeartbeatRpcs
    # Streams to the next members in name order, and the ones we serve (shell/attend.py).
    attendance: Attendance
    attend_server: AttendServer
    # The gRPC server with every service registered, not yet bound.
    server: grpc.aio.Server


def load_keyring(config: AgentConfig) -> Keyring | None:
    """The gossip keyring: the data directory's keyring file wins over --encrypt
    (as in Consul), because keys may have been rotated since the flag was written.

    A keyring file that cannot be read or parsed raises ConfigError: starting
    without encryption, or with --encrypt's possibly rotated-out key, would
    change security silently, and the file is never written over unread. Only a
    keyring built from --encrypt is written, so that rotations are kept."""
    if config.data_dir:
        store = KeyringFile(config.data_dir)
        keys = store.load()
        if keys is not None:
            # Warned only when the flag would choose another primary key: a flag that
            # still names the file's primary key changes nothing.
            if config.encryption_key is not None and config.encryption_key != keys[0]:
                log.warning(
                    "--encrypt is ignored: the keyring file %s holds this agent's keys and"
                    " another primary key (keys rotate with `controlplane keys`); remove the"
                    " file to start from --encrypt",
                    store.path,
                )
            log.info("gossip keyring: %d keys from %s", len(keys), store.path)
            return Keyring(keys)
    if config.encryption_key is None:
        return None
    keyring = Keyring([config.encryption_key])
    if config.data_dir:
        store = KeyringFile(config.data_dir)
        try:
            store.save(keyring.keys)
        except OSError as error:
            raise ConfigError(
                f"keyring file {str(store.path)!r} cannot be written: {error.strerror or error}"
            ) from None
    return keyring


def check_token_protection(config: AgentConfig, keyring: Keyring | None) -> None:
    """Tokens guard the public services only: the internal push-pull service on the
    same port answers without one, so it must be guarded by gossip encryption
    (its frames are sealed with the keyring) or by mTLS."""
    if not (config.api_token or config.api_tokens_file):
        return
    if keyring is None and not config.verify_incoming:
        raise ConfigError(
            "api_token and api_tokens_file protect the public API only: the internal"
            f" push-pull service on the same port ({config.port}) answers without a"
            " token, so anyone could read and forge membership through it; also set"
            " --encrypt KEY (`controlplane keygen`) or verify_incoming (mTLS)"
        )


def warn_if_open(config: AgentConfig, encrypted: bool) -> None:
    """Once per start: gossip without encryption on a reachable address is open."""
    if encrypted or ipaddress.ip_address(config.bind).is_loopback:
        return
    log.warning(
        "gossip is not encrypted: anyone who can reach %s (UDP and TCP) can join the"
        " cluster, read the member list and forge membership; start every agent with"
        " --encrypt KEY (`controlplane keygen` prints one, docs/security.md)",
        config.listen_target,
    )


def access_policy(config: AgentConfig) -> AccessPolicy | None:
    """Who may call what (api/auth.py); None when everyone may call everything,
    so an open loopback agent pays nothing per call."""
    file_tokens: list[ApiToken] = []
    if config.api_tokens_file:
        file_tokens, warning = load_tokens_file(config.api_tokens_file)
        if warning:
            log.warning("%s", warning)
    tokens = configured_tokens(config.api_token, file_tokens)
    loopback_only = ipaddress.ip_address(config.bind).is_loopback
    if not tokens and loopback_only:
        return None
    return AccessPolicy(tuple(tokens), loopback_only, config.verify_incoming)


def _membership(
    config: AgentConfig, keyring: Keyring | None, now: float
) -> tuple[Membership, SnapshotFile | None]:
    snapshot_state = None
    snapshot_file = None
    if config.data_dir:
        path = snapshot_path(config.data_dir)
        snapshot_state = read_snapshot(path, rejoin_after_leave=config.rejoin_after_leave)
        snapshot_file = SnapshotFile(path)
    layer = Membership(
        PROFILES[config.profile](tcp_pings=not config.disable_tcp_pings),
        MembershipConfig(
            coalesce_period=config.coalesce_period,
            quiescent_period=config.quiescent_period,
            user_coalesce_period=config.user_coalesce_period,
            user_quiescent_period=config.user_quiescent_period,
            reconnect_interval=config.reconnect_interval,
            reconnect_timeout=config.reconnect_timeout,
            tombstone_timeout=config.tombstone_timeout,
            snapshot_records=snapshot_file is not None,
            disable_coordinates=config.disable_coordinates,
        ),
        config.node,
        (config.advertise_address, config.port),
        tags=agent_tags(config),
        # Production randomness: seeded from the OS; tests seed their own cores.
        rng=random.Random(),
        now=now,
        keyring=keyring,
        label=config.cluster_label,
        snapshot=snapshot_state,
    )
    return layer, snapshot_file


def build_components(config: AgentConfig, hooks: AgentHooks) -> Components:
    """Every component of an agent, built from `config` on the running loop.

    Reads the start-time files (TLS, tokens, data directory, keyring, snapshot,
    ring registrations, epoch) in that order; a problem with any of them, or with
    the settings together, raises ConfigError (one line, exit 2). Nothing is bound
    or started: `Agent.start` binds the ports and starts the parts."""
    # The components' clock: the one asyncio's own loop reads. uvloop's (`loop.time()`)
    # counts whole milliseconds, read once per loop iteration: too coarse for round
    # trips on a LAN (shell/eventloop.py). Timers still go through the loop.
    clock = time.monotonic
    # Read once here; SIGHUP reads them again (`Agent.reload_tls`).
    tls = AgentTls.from_config(config)
    access = access_policy(config)
    try:
        if config.data_dir:
            check_data_dir(config.data_dir)
        keyring = load_keyring(config)
        check_token_protection(config, keyring)
        layer, snapshot_file = _membership(config, keyring, clock())
    except OSError as error:
        raise ConfigError(
            f"data directory {config.data_dir!r} is not usable: {error.strerror or error}"
        ) from None
    push_pull = PushPullClient(tls.outgoing, tls.channel_options())
    runtime = GossipRuntime(
        layer,
        push_pull=push_pull,
        snapshot=snapshot_file,
        keyring=keyring,
        label=config.cluster_label,
    )
    runtime.subscribe(hooks.events.publish)
    metrics = hooks.metrics
    observer = metrics.rpcs if metrics is not None else None
    publish_leader: Callable[[LeaderView | None], None] = hooks.leader_changes.publish
    if metrics is not None:
        runtime.subscribe(metrics.members.on_event)
        publish_leader = metrics.count_leader_changes(publish_leader)
    runtime.on_name_conflict(hooks.on_name_conflict)
    pools = PoolRegistry(clock, pinger=tls_health_ping(lambda: tls.outgoing, tls.channel_options()))
    epochs = EpochStore(config.data_dir) if config.data_dir else None
    try:
        rings = RingService(
            RingDirectory(config.node, ring_settings=config.rings),
            layer,
            runtime.send,
            clock,
            RegistrationStore(config.data_dir) if config.data_dir else None,
        )
        # Out of range or damaged: exit 2 with one line (shell/election.py).
        stored_epoch = epochs.load() if epochs else 0
    except ConfigError:
        if snapshot_file is not None:
            snapshot_file.close()
        raise
    runtime.on_channel(RING_CHANNEL, rings.on_channel, rings.local_state)
    keys = KeyringService(
        layer,
        runtime.send,
        keyring,
        KeyringFile(config.data_dir) if config.data_dir else None,
    )
    runtime.on_channel(KEYRING_CHANNEL, keys.on_channel)
    election = ElectionDriver(
        Election(
            ElectionConfig(
                lease_time=config.lease_time,
                beat_interval=config.beat_interval,
                max_clock_skew=config.max_clock_skew,
                quorum=config.election_quorum,
            ),
            config.node,
            rank=config.rank if config.role == "server" else None,
            now=clock(),
            epoch=stored_epoch,
            life=new_life(),
            # Until its joins are done the agent cannot tell a leader in office from none.
            joining=True,
        ),
        runtime,
        publish_leader,
        epochs,
    )

    def leader_address_and_epoch() -> tuple[str, int] | None:
        """The leader's gRPC address and epoch, for heartbeat responses."""
        view = election.leader()
        if view is None:
            return None
        # Read per heartbeat: the address alone, without building a Leader message.
        address = leader_address(view, layer)
        return (address, view.epoch) if address else None

    heartbeats = HeartbeatRpcs(
        layer,
        HeartbeatTracker(random.Random()),
        clock,
        leader=leader_address_and_epoch,
        distances=layer.distances_from,
    )
    queries = QueryDriver(
        runtime,
        QueryHandlers(config.query_handlers, config.query_handler_timeout, config.node),
    )
    # Every view of the members (rings, election, heartbeat server lists) follows
    # member events one member at a time: a fleet's churn costs what changed.
    attendance = Attendance(config.node, push_pull.open_channel, runtime.probe_now)
    member_listeners = (
        rings.on_member_event,
        election.on_member_event,
        heartbeats.on_member_event,
        attendance.on_member_event,
    )

    def on_event(event: Event) -> None:
        if not isinstance(event, MemberEvent):
            return
        hooks.heap.observe(layer.member_count(), len(event.members))
        for listener in member_listeners:
            try:
                listener(event)
            except Exception:
                log.exception("member view update failed on %s", event.type.value)

    runtime.subscribe(on_event)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    members = MembershipService(
        layer, runtime, hooks.events, default_port=config.port, leave=hooks.leave
    )
    leader = LeaderRpcs(
        layer,
        election.leader,
        hooks.leader_changes,
        election.status,
        election.election.ranked,
        lambda: election.history,
    )
    MEMBERSHIP.add_to_server(
        MembershipServicer(members, leader, hooks.describe, hooks.monitor, QueryRpcs(queries)),
        server,
        access,
        observer,
    )
    SERVER_POOL.add_to_server(
        ServerPoolServicer(ServerPoolRpcs(pools, layer.distances_from), heartbeats),
        server,
        access,
        observer,
    )
    RING.add_to_server(RingServicer(rings), server, access, observer)
    KEYRING.add_to_server(KeyringServicer(keys), server, access, observer)

    def is_alive_member(name: str) -> bool:
        member = layer.member(name)
        return member is not None and member.status is MemberStatus.ALIVE

    attend_server = AttendServer(is_alive_member)
    GOSSIP.add_to_server(
        GossipServicer(runtime.serve_push_pull, attend_server, runtime.answer_stream_ping),
        server,
        None,
        observer,
    )
    return Components(
        tls=tls,
        api_tokens=tuple(access.tokens) if access is not None else (),
        encrypted=keyring is not None,
        layer=layer,
        runtime=runtime,
        push_pull=push_pull,
        pools=pools,
        rings=rings,
        keys=keys,
        election=election,
        queries=queries,
        heartbeats=heartbeats,
        attendance=attendance,
        attend_server=attend_server,
        server=server,
    )


class Agent:
    """One controlplane agent: a gossip member serving the public API."""

    def __init__(
        self, config: AgentConfig, *, reload_config: Callable[[], AgentConfig] | None = None
    ) -> None:
        self.config = config
        # Reads the configuration again (SIGHUP); None: nothing to reload from.
        self._reload_config = reload_config
        self.health = health.aio.HealthServicer()
        self.events: EventHub[Event] = EventHub()
        self.leader_changes: EventHub[LeaderView | None] = EventHub()
        self.loop_lag = LoopLagProbe(config.loop_lag_interval)
        self.heap = HeapSettler()
        self._started_at = time.monotonic()
        # The log as a stream for Monitor; installed on the root logger at start.
        self._log_stream: LogStream | None = None
        self.metrics: AgentMetrics | None = None
        self._metrics_listener: MetricsListener | None = None
        if config.metrics_addr:
            # Imported only here: prometheus_client loads `ssl` (shell/nossl.py).
            from controlplane.shell.metrics import AgentMetrics

            self.metrics = AgentMetrics()
        # Set by `start` once every component is built and the server serves.
        self._components: Components | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._left = False
        self._leaving = asyncio.Lock()
        # Whether `stop` leaves the cluster: a SIGTERM asks for leave_on_terminate.
        self._leave_on_stop = True
        self._tasks: list[asyncio.Task[None]] = []
        self._leave_task: asyncio.Task[None] | None = None
        # Set when this agent joined a cluster where its name was taken: it stops.
        self.name_taken: str | None = None
        # Set when retry_max join attempts reached nobody: it stops.
        self.join_failed: str | None = None
        self._conflicts_warned: dict[tuple[str, int], float] = {}

    @property
    def components(self) -> Components:
        """The started agent's components; RuntimeError before `start` succeeded."""
        if self._components is None:
            raise RuntimeError("the agent has not started")
        return self._components

    @property
    def started(self) -> bool:
        return self._components is not None

    @property
    def service_names(self) -> list[str]:
        return [service.full_name for service in PUBLIC_SERVICES]

    async def start(self) -> None:
        config = self.config
        for kind, label in ((socket.SOCK_STREAM, "TCP"), (socket.SOCK_DGRAM, "UDP")):
            if _port_in_use(config.bind, config.port, kind):
                raise ConfigError(
                    f"port {config.port} on {config.bind} is already in use ({label})"
                )
        parts = build_components(
            config,
            AgentHooks(
                events=self.events,
                leader_changes=self.leader_changes,
                heap=self.heap,
                leave=self.leave_cluster,
                on_name_conflict=self._on_name_conflict,
                describe=self.describe,
                monitor=self.monitor,
                metrics=self.metrics,
            ),
        )
        tls, server = parts.tls, parts.server
        health_pb2_grpc.add_HealthServicer_to_server(self.health, generic_only(server))
        add_reflection(server, [*self.service_names, health.SERVICE_NAME])
        try:
            if tls.serving:
                bound = server.add_secure_port(config.listen_target, tls.server_credentials())
            else:
                bound = server.add_insecure_port(config.listen_target)
        except RuntimeError as error:
            raise ConfigError(f"cannot bind {config.listen_target}: {error}") from None
        if bound == 0:
            raise ConfigError(f"cannot bind {config.listen_target}")
        try:
            parts.runtime.open(config.bind, config.port)
        except OSError as error:
            raise ConfigError(f"cannot bind UDP {config.listen_target}: {error.strerror}") from None
        if self.metrics is not None:
            await self._start_metrics(parts)
        await server.start()
        self._started_at = time.monotonic()
        self._log_stream = LogStream(asyncio.get_running_loop(), _log_level(config.log_level))
        self._log_stream.install()
        self.loop_lag.start()
        self.heap.start()
        self._components = parts
        parts.pools.start()
        parts.election.start()
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if parts.api_tokens:
            # Names and scopes only: the secrets are never logged.
            log.info(
                "API tokens: %s",
                ", ".join(f"{token.name} ({token.scope.label})" for token in parts.api_tokens),
            )
        log.info(
            "agent %s serving on %s (advertising %s, profile %s, role %s)",
            config.node,
            config.listen_target,
            config.advertise_address,
            config.profile,
            config.role,
        )
        log.info("event loop: %s", describe_running_loop())
        log.info("%s", tls.summary())
        if tls.serving and not tls.outgoing_tls:
            log.warning(
                "this agent serves TLS but calls its peers in plaintext: push-pull with"
                " peers that serve TLS fails; set verify_outgoing (with tls_ca_file)"
            )
        warn_if_open(config, parts.encrypted)
        snapshot = parts.layer.snapshot_state
        if snapshot is not None and snapshot.left and snapshot.members:
            log.info(
                "this agent left gracefully before it stopped; rejoining the %d members"
                " of its snapshot (rejoin_after_leave)",
                len(snapshot.members),
            )
        if snapshot is not None and snapshot.members:
            parts.election.expect_join()
            self._tasks.append(asyncio.create_task(self._rejoin(parts)))
        if config.join:
            # Membership is NOT_SERVING until the agent has reached the cluster.
            await self.health.set(MEMBERSHIP.full_name, health_pb2.HealthCheckResponse.NOT_SERVING)
            parts.election.expect_join()
            self._tasks.append(asyncio.create_task(self._join(parts, config.join)))
        parts.election.joins_started()

    async def _start_metrics(self, parts: Components) -> None:
        from controlplane.config import split_metrics_address
        from controlplane.shell.metrics import render
        from controlplane.shell.metrics_http import MetricsListener

        assert self.metrics is not None
        host, port = split_metrics_address(self.config.metrics_addr)
        registry = self.metrics.registry(self)
        listener = MetricsListener(lambda: render(registry))
        try:
            await listener.start(host, port)
        except OSError as error:
            parts.runtime.udp.close()
            raise ConfigError(
                f"cannot bind the metrics listener {self.config.metrics_addr}:"
                f" {error.strerror or error}"
            ) from None
        self._metrics_listener = listener
        log.info("metrics at http://%s/metrics", format_host_port(host, listener.port))

    def describe(self) -> membership_pb2.GetInfoResponse:
        """The agent, its runtime, cluster, election and rings (GetInfo, `controlplane
        info`). O(rings): member counts by status are kept as statuses change."""
        parts, config = self.components, self.config
        layer, node = parts.layer, parts.layer.node
        info = membership_pb2.GetInfoResponse()
        agent = info.agent
        agent.name = config.node
        agent.version = _software_version()
        agent.address = format_host_port(config.advertise_address, config.port)
        agent.profile, agent.role, agent.cluster_label = (
            config.profile,
            config.role,
            config.cluster_label,
        )
        agent.uptime.FromNanoseconds(round((time.monotonic() - self._started_at) * 1e9))
        agent.tags.update(layer.local_member().tags)
        runtime = info.runtime
        runtime.python = platform.python_version()
        runtime.platform = f"{platform.system()} {platform.machine()}"
        runtime.cpus = len(os.sched_getaffinity(0))
        runtime.rss_bytes = _resident_bytes()
        runtime.tasks = len(asyncio.all_tasks())
        lag = self.loop_lag.stats
        runtime.loop_lag_max.FromNanoseconds(round(lag.max * 1e9))
        runtime.loop_lag_p99.FromNanoseconds(round(lag.percentile(0.99) * 1e9))
        gossip = info.gossip
        gossip.members = layer.member_count()
        gossip.alive = layer.status_count(MemberStatus.ALIVE)
        gossip.leaving = layer.status_count(MemberStatus.LEAVING)
        gossip.left = layer.status_count(MemberStatus.LEFT)
        gossip.failed = layer.status_count(MemberStatus.FAILED)
        gossip.member_time = layer.lamport_time
        gossip.event_time = layer.event_time
        gossip.query_time = parts.queries.queries.lamport_time
        gossip.broadcast_queue = node.broadcast_queue_depth
        gossip.health_score = node.health_score
        gossip.incarnation = node.incarnation
        gossip.encrypted = parts.encrypted
        gossip.tls = parts.tls.summary()
        election = info.election
        view = parts.election.leader()
        status = parts.election.status()
        election.leader = view.name if view is not None else ""
        election.epoch = parts.election.election.epoch
        election.is_leader = view is not None and view.is_self
        election.state = status.state
        election.lease_time.FromNanoseconds(round(config.lease_time * 1e9))
        election.beat_interval.FromNanoseconds(round(config.beat_interval * 1e9))
        election.max_clock_skew.FromNanoseconds(round(config.max_clock_skew * 1e9))
        rings = parts.rings.directory
        for name in rings.names():
            ring = rings.view(name)
            info.rings.add(name=name, nodes=len(ring.entries), version=ring.version)
        return info

    async def monitor(
        self, request: membership_pb2.MonitorRequest
    ) -> AsyncIterator[membership_pb2.MonitorResponse]:
        """The agent's log lines at the asked level and above, until the caller stops."""
        name = request.log_level or "info"
        if name not in LOG_LEVELS:
            raise InvalidArgument.for_field(
                "log_level", f"must be one of {', '.join(LOG_LEVELS)}; got {name[:32]!r}"
            )
        stream = self._log_stream
        if stream is None:
            raise Unavailable("the agent is not serving yet")
        reader = stream.open(_log_level(name))
        try:
            async for line in reader:
                response = membership_pb2.MonitorResponse(
                    level=line.level,
                    logger=line.logger,
                    message=line.message,
                    dropped=line.dropped,
                )
                response.time.FromNanoseconds(round(line.created * 1e9))
                yield response
        finally:
            reader.close()

    def _on_name_conflict(self, conflict: NameConflict) -> None:
        """Serf's answer to a name conflict: the newcomer goes, the incumbent stays.

        The newcomer is the member that finds its name taken in the answer to its own
        join; it stops without a leave, which would announce the incumbent's name as
        leaving. The incumbent only warns (at most every CONFLICT_WARN_EVERY seconds
        per claimant)."""
        claimant = format_host_port(*conflict.claimant)
        if conflict.joining:
            if self.name_taken is None:
                self.name_taken = (
                    f"node name {conflict.name!r} is already taken by the member at"
                    f" {claimant}; start this agent with another --node"
                )
                self.request_stop()
            return
        now = asyncio.get_running_loop().time()
        last = self._conflicts_warned.get(conflict.claimant)
        if last is None or now - last >= CONFLICT_WARN_EVERY:
            self._conflicts_warned[conflict.claimant] = now
            log.warning(
                "the member at %s claims this agent's node name %r; the claim is refused"
                " (an agent that joins with a taken name stops)",
                claimant,
                conflict.name,
            )

    async def _rejoin(self, parts: Components) -> None:
        contacted = await parts.runtime.rejoin()
        log.info("rejoined %d members remembered in the snapshot", contacted)
        parts.election.joined()

    async def _join(self, parts: Components, addresses: Sequence[str]) -> None:
        config = self.config
        contacted = await parts.runtime.retry_join(
            addresses, config.port, config.retry_interval, max_attempts=config.retry_max
        )
        if contacted is None:
            # Serf's and Consul's retry_max: an agent that cannot reach its cluster
            # exits, so that its supervisor sees it and tries again.
            self.join_failed = (
                f"no member answered at {', '.join(addresses)} in {config.retry_max}"
                " join attempts (retry_max); stopping"
            )
            log.error("%s", self.join_failed)
            self.request_stop()
            return
        parts.election.joined()
        await self.health.set(MEMBERSHIP.full_name, health_pb2.HealthCheckResponse.SERVING)

    async def leave_cluster(self) -> None:
        """Drain, then leave gracefully; the agent stops once the caller is answered.

        The sequence belongs to the agent, not to the RPC: a caller whose deadline
        passes (or who goes away) must not leave the agent half-drained."""
        if self._leave_task is None:
            self._leave_task = asyncio.create_task(self._leave_then_stop())
        await asyncio.shield(self._leave_task)

    async def _leave_then_stop(self) -> None:
        try:
            await self._drain_and_leave()
        finally:
            # Answer the Leave RPC first; the server then stops as on SIGTERM.
            asyncio.get_running_loop().call_later(0.1, self.request_stop)

    async def _drain_and_leave(self, leave: bool = True) -> None:
        """Drain, then leave unless told not to (leave_on_terminate = false: the
        others see a failure, keep trying to reconnect, and the snapshot keeps its
        members, so the agent comes back as it was)."""
        parts = self.components
        async with self._leaving:
            if self._left:
                return
            await self.health.enter_graceful_shutdown()
            # Clients learn from gossip and heartbeats that this server is going away.
            runtime = parts.runtime
            runtime.apply(parts.layer.update_tags({DRAINING_TAG: "true"}, (), runtime.now))
            if self.config.drain_period > 0:
                await asyncio.sleep(self.config.drain_period)
            if not leave:
                log.info(
                    "agent %s stops without leaving (leave_on_terminate = false)", self.config.node
                )
                return
            await runtime.leave()
            self._left = True
            log.info("agent %s left the cluster", self.config.node)

    def request_stop(self) -> None:
        """Asks the agent to shut down gracefully (safe to call from a signal handler)."""
        self._stopping.set()

    def _on_sigterm(self) -> None:
        if not self._stopping.is_set():
            self._leave_on_stop = self.config.leave_on_terminate
        self.request_stop()

    async def stop(self) -> None:
        """Graceful shutdown: drain, leave, then let in-flight RPCs finish."""
        parts = self._components
        if parts is None or self._stopped.is_set():
            return
        log.info("agent %s stopping (grace %.1fs)", self.config.node, self.config.shutdown_grace)
        for task in self._tasks:
            task.cancel()
        if self.name_taken is None:
            await self._drain_and_leave(leave=self._leave_on_stop)
        self.events.close()
        self.leader_changes.close()
        parts.election.close()
        await parts.queries.close()
        parts.rings.close()
        await parts.attendance.close()
        parts.attend_server.release()
        await parts.server.stop(self.config.shutdown_grace)
        await parts.pools.close()
        await parts.runtime.close()
        if self._metrics_listener is not None:
            await self._metrics_listener.close()
        if self._log_stream is not None:
            self._log_stream.uninstall()
        self.loop_lag.stop()
        self._stopped.set()
        self.heap.stop()
        log.info("%s", self.loop_lag.stats.summary())
        log.info("%s", self.heap.summary())
        log.info("agent %s stopped", self.config.node)

    def _on_sighup(self) -> None:
        # Files are read off the loop: a slow disk must not stall gossip.
        task = asyncio.create_task(self._reload_on_signal())
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _reload_on_signal(self) -> None:
        await self.reload_settings()
        await self.reload_tls()

    async def reload_settings(self) -> bool:
        """SIGHUP: reads the configuration again and applies the log level and the
        tags (Serf's and Consul's reload). Other changed settings are named in a
        warning and wait for a restart. A configuration that fails its checks logs
        one error line and changes nothing; returns whether anything changed."""
        parts = self._components
        if parts is None or self._reload_config is None:
            return False
        try:
            # Off the loop: the file may sit on a slow disk.
            new = await asyncio.to_thread(self._reload_config)
        except ConfigError as error:
            log.error("SIGHUP: configuration not reloaded: %s", error)
            return False
        old = self.config
        changed = False
        if new.log_level != old.log_level:
            set_log_level(new.log_level)
            if self._log_stream is not None:
                self._log_stream.set_configured_level(_log_level(new.log_level))
            log.info("SIGHUP: log level %s (was %s)", new.log_level, old.log_level)
            changed = True
        if new.tags != old.tags:
            before, after = agent_tags(old), agent_tags(new)
            updates = {key: value for key, value in after.items() if before.get(key) != value}
            deleted = [key for key in before if key not in after]
            try:
                parts.runtime.apply(parts.layer.update_tags(updates, deleted, parts.runtime.now))
            except ControlPlaneError as error:
                log.error("SIGHUP: tags not reloaded: %s", error.message)
                new = replace(new, tags=old.tags)
            else:
                log.info("SIGHUP: tags %s", ", ".join(f"{k}={v}" for k, v in after.items()))
                changed = True
        waiting = [
            setting.name
            for setting in fields(AgentConfig)
            if setting.name not in RELOADABLE
            and getattr(new, setting.name) != getattr(old, setting.name)
        ]
        if waiting:
            log.warning(
                "SIGHUP: %s changed; restart the agent to apply (a reload applies %s)",
                ", ".join(waiting),
                ", ".join(sorted(RELOADABLE)),
            )
        self.config = replace(old, log_level=new.log_level, tags=new.tags)
        if not changed and not waiting:
            log.info("SIGHUP: configuration read again; nothing changed")
        return changed

    async def reload_tls(self) -> bool:
        """SIGHUP: reads the TLS files again. New handshakes, in and out, use them;
        open connections (watch streams included) keep theirs. A failure logs one
        error line and keeps the current files; returns whether they were replaced."""
        parts = self._components
        if parts is None or not (parts.tls.serving or parts.tls.outgoing_tls):
            log.info("SIGHUP: no TLS files to read again")
            return False
        if not await asyncio.to_thread(parts.tls.reload):
            return False
        parts.push_pull.set_credentials(parts.tls.outgoing)
        return True

    async def run(self) -> int:
        """Starts, serves until SIGTERM/SIGINT or `request_stop`, stops; returns 0.

        Raises NodeNameTaken, once stopped, when the node name was taken, and
        JoinFailed when retry_max join attempts reached nobody."""
        loop = asyncio.get_running_loop()
        await self.start()
        loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
        # SIGINT always leaves, as Serf's default skip_leave_on_interrupt = false does.
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        try:
            await self._stopping.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(signum)
            await self.stop()
        if self.name_taken is not None:
            raise NodeNameTaken(self.name_taken)
        if self.join_failed is not None:
            raise JoinFailed(self.join_failed)
        return 0
