"""What the blocking and the asyncio clients share: settings, channel options,
the locked server pool, and the rule that decides whether a failure is retried.

`Failover` wraps `controlplane.pool.ServerPool` (pure, not thread-safe) behind a
lock and a monotonic clock: seeds first, then the server lists pushed by
heartbeat responses, re-discovery from the seeds when every known server is
gone. `classify` turns a failed attempt into "retry on the next server" or "raise
this error", following the idempotency table.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from controlplane.client.idempotency import is_idempotent
from controlplane.client.status import error_from_status, is_from_agent, rpc_error_parts
from controlplane.client.tls import TlsFiles, load_credentials
from controlplane.errors import ControlPlaneError, DeadlineExceeded, Unavailable
from controlplane.pool import (
    ApiVersion,
    PoolConfig,
    RebalancePlan,
    RebalanceResult,
    Server,
    ServerPool,
    parse_address,
)
from controlplane.v1 import server_pool_pb2

__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "HEARTBEAT_CEILING",
    "HEARTBEAT_FLOOR",
    "ClientOptions",
    "Failover",
    "classify",
    "resolve_seed",
]

DEFAULT_TIMEOUT = 5.0
DEFAULT_ATTEMPT_TIMEOUT = 1.0
"""Seconds one attempt of an idempotent call may take before the next server is
tried: the agents answer in milliseconds, so an agent silent for a second is
treated as hung (stopped, black-holed, its loop stuck) rather than waited for."""
HEARTBEAT_FLOOR = 1.0
"""Seconds; a server asking for faster heartbeats is slowed down to this."""
HEARTBEAT_CEILING = 300.0
"""Seconds; a server asking for slower heartbeats (or none) is capped to this."""
HEARTBEAT_RETRY = 2.0
"""Seconds before the next heartbeat after one that failed everywhere."""
PING_TIMEOUT = 1.0
"""Seconds a rebalance ping (Health/Check) may take."""

CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    # Keepalive paired with the agent (grpc.http2.min_ping_interval_without_data_ms
    # = 10 s, keepalive_permit_without_calls = 1): pinging every 20 s keeps an idle
    # watch open through NATs and load balancers and notices a dead peer within
    # 20 s + 10 s, without ever being treated as ping abuse.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # A restarted agent should be reachable again soon; gRPC's default first
    # backoff is 1 s and grows to 120 s.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    # Failover is the client's job: gRPC's own retries would repeat writes.
    ("grpc.enable_retries", 0),
)

Resolver = Callable[[str], Sequence[str]]


def resolve_seed(seed: str) -> list[str]:
    """`host:port` -> every `ip:port` it resolves to now (IP literals as they are)."""
    host, port = parse_address(seed, field="seed")
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        return [seed]
    addresses: list[str] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM):
        ip = str(sockaddr[0])
        address = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
        if address not in addresses:
            addresses.append(address)
    return addresses


def literal_seeds(seeds: Sequence[str]) -> dict[str, list[str]]:
    """The seeds that are IP literals, each as its own resolution: what a client can
    know without DNS. Malformed seeds are left for the resolver to report."""
    known: dict[str, list[str]] = {}
    for seed in seeds:
        try:
            host, _ = parse_address(seed, field="seed")
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            continue
        known[seed] = [seed]
    return known


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Settings of a `Client` or `AsyncClient`.

    Attributes:
        timeout: default deadline of every unary call, seconds (per call: `timeout=`).
            It covers every attempt of the call.
        attempt_timeout: deadline of one attempt of an idempotent call, seconds: an
            agent that has not answered by then is reported failed and the call
            moves to the next server, so a hung agent costs at most this much. When
            no untried server is left, the last one cut off is tried once more with
            whatever the call's deadline leaves. None: every attempt may use the
            rest of the call's deadline. Writes (not idempotent) are never cut
            short, as they are never repeated.
        client_id: identifies this client in heartbeats (default: a random UUID).
        api_version: the API version this client speaks; other servers are skipped.
        metadata: sent with heartbeats (shown by ListClients).
        heartbeat: run the background heartbeat (and rebalance) at all.
        heartbeat_interval_override: FOR TESTS ONLY. Heartbeat at this interval
            instead of the one each heartbeat response asks for. By default (None)
            the server's value is respected.
        resolver: resolves a seed to addresses on every re-discovery.
        channel_options: extra gRPC channel options, appended to CHANNEL_OPTIONS.
        seed: randomness for the pool's shuffles (tests).
        token: API token sent with every call (agents started with `api_token`).
        ca_file: PEM CA bundle that verifies the agents' certificates. With
            `ca_file` or `cert_file` set, the client speaks TLS (without `ca_file`,
            gRPC's bundled public roots verify the agents).
        cert_file: PEM client certificate, presented to agents started with
            `verify_incoming` (mTLS); needs `key_file`.
        key_file: the unencrypted PEM private key of `cert_file`.
        tls_server_name: the name expected in every agent's certificate instead of
            the host dialled (e.g. `server.controlplane`, which agents started with
            `verify_server_hostname` carry); needs TLS.
        backups: agents (`host:port`) tried only when no agent of the cluster the
            seeds and heartbeats name answers, for example another datacenter's
            (the pool's backup servers; `set_backups` changes them later).
        datacenter: the client's datacenter. Servers that heartbeats list in
            another datacenter (agents started with `datacenter`) become backups,
            tried only when no local one answers (Nomad's rule). Empty: all are
            primaries.
        The files are read and checked once, when the client is created: a file
        that cannot be read, is not PEM, or a key that does not match its
        certificate raises ValueError naming the field.
    """

    timeout: float = DEFAULT_TIMEOUT
    attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT
    client_id: str = field(default_factory=lambda: f"py-{uuid.uuid4()}")
    api_version: ApiVersion = field(default_factory=lambda: ApiVersion(1, 0))
    metadata: Mapping[str, str] = field(default_factory=dict)
    heartbeat: bool = True
    heartbeat_interval_override: float | None = None
    resolver: Resolver = resolve_seed
    channel_options: Sequence[tuple[str, int | str]] = ()
    seed: int | None = None
    token: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_server_name: str = ""
    backups: Sequence[str] = ()
    datacenter: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.backups, str):
            raise ValueError("backups must be a sequence of 'host:port' addresses, not a string")
        for address in self.backups:
            try:
                Server.from_address(address)
            except ValueError as error:
                raise ValueError(f"backups: {error}") from None
        if bool(self.cert_file) != bool(self.key_file):
            given, missing = (
                ("cert_file", "key_file") if self.cert_file else ("key_file", "cert_file")
            )
            raise ValueError(f"{given} is set but {missing} is not: give both")
        if self.tls_server_name and not self.tls_files.enabled:
            raise ValueError("tls_server_name needs TLS: set ca_file (or cert_file)")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if self.attempt_timeout is not None and not self.attempt_timeout > 0:
            raise ValueError(
                f"attempt_timeout must be > 0 seconds or None, got {self.attempt_timeout!r}"
            )
        override = self.heartbeat_interval_override
        if override is not None and not override > 0:
            raise ValueError(f"heartbeat_interval_override must be > 0, got {override!r}")

    @property
    def tls_files(self) -> TlsFiles:
        return TlsFiles(self.ca_file, self.cert_file, self.key_file)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """Reads and checks the TLS files (ValueError naming the field); None: plaintext."""
        return load_credentials(self.tls_files)


def server_from_proto(proto: server_pool_pb2.Server) -> Server:
    version = (
        ApiVersion(proto.api_version.major, proto.api_version.minor)
        if proto.HasField("api_version")
        else None
    )
    return Server(
        name=proto.name,
        address=proto.address,
        api_version=version,
        draining=proto.draining,
        datacenter=proto.datacenter,
    )


def heartbeat_interval(
    response: server_pool_pb2.HeartbeatResponse, options: ClientOptions
) -> float:
    """When to heartbeat next: the override, else the server's value within bounds."""
    if options.heartbeat_interval_override is not None:
        return options.heartbeat_interval_override
    if not response.HasField("heartbeat_interval"):
        return HEARTBEAT_CEILING
    asked = response.heartbeat_interval.seconds + response.heartbeat_interval.nanos / 1e9
    return min(max(asked, HEARTBEAT_FLOOR), HEARTBEAT_CEILING)


class Failover:
    """The client's ServerPool behind a lock, on the monotonic clock."""

    def __init__(self, seeds: Sequence[str], options: ClientOptions) -> None:
        if isinstance(seeds, str):
            seeds = [seeds]
        if not seeds:
            raise ValueError("at least one seed address ('host:port') is needed")
        self._lock = threading.Lock()
        self._options = options
        self._pool = ServerPool(
            PoolConfig(
                client_api_version=options.api_version,
                seed_addresses=tuple(seeds),
                datacenter=options.datacenter,
            ),
            rng=random.Random(options.seed),
        )
        self.current: Server | None = None
        self._converted: tuple[list[server_pool_pb2.Server], list[Server]] = ([], [])
        self.set_backups(options.backups)

    def backups(self) -> tuple[Server, ...]:
        with self._lock:
            return self._pool.backup_servers()

    def set_backups(self, addresses: Sequence[str]) -> int:
        """Replaces the backup agents; returns how many the pool holds."""
        if isinstance(addresses, str):
            raise ValueError("backups must be a sequence of 'host:port' addresses, not a string")
        servers = [Server.from_address(address) for address in addresses]
        with self._lock:
            self._pool.set_backup_servers(servers)
            return len(self._pool.backup_servers())

    @property
    def seeds(self) -> tuple[str, ...]:
        return self._pool.config.seed_addresses

    def rediscover(self, resolved: Mapping[str, Sequence[str]] | None = None) -> None:
        """Re-resolves the seeds (or uses answers resolved elsewhere, off-loop)."""
        with self._lock:
            now = time.monotonic()
            if resolved is None:
                self._pool.rediscover(self._options.resolver, now)
            else:
                self._pool.apply_resolution(
                    {s: resolved[s] for s in self._pool.seeds_to_resolve(now) if s in resolved},
                    now,
                )

    def needs_rediscovery(self) -> bool:
        with self._lock:
            return self._pool.needs_rediscovery(time.monotonic())

    def candidates(self) -> tuple[Server, ...]:
        with self._lock:
            return self._pool.candidates(time.monotonic())

    def find_server(self) -> Server | None:
        with self._lock:
            return self._pool.find_server(time.monotonic())

    def failed(self, server: Server) -> None:
        with self._lock:
            self._pool.notify_failed_server(server, time.monotonic())

    def succeeded(self, server: Server) -> None:
        with self._lock:
            self._pool.notify_success(server, time.monotonic())
        self.current = server

    def set_draining(self, server: Server) -> None:
        with self._lock:
            self._pool.set_draining(server, True)

    def refresh(self, response: server_pool_pb2.HeartbeatResponse) -> None:
        protos = list(response.servers)
        # Heartbeats repeat the same list; converting it costs more than comparing it.
        last_protos, last_servers = self._converted
        if protos == last_protos:
            servers = last_servers
        else:
            servers = [server_from_proto(s) for s in protos]
            self._converted = (protos, servers)
        with self._lock:
            self._pool.refresh_server_lists(
                servers, response.num_nodes, response.leader_address or None, time.monotonic()
            )

    def servers(self) -> tuple[Server, ...]:
        with self._lock:
            return self._pool.servers()

    def next_rebalance_interval(self) -> float:
        with self._lock:
            return self._pool.next_rebalance_interval()

    def plan_rebalance(self) -> RebalancePlan:
        with self._lock:
            return self._pool.plan_rebalance(time.monotonic())

    def apply_pings(
        self, plan: RebalancePlan, results: Sequence[tuple[Server, bool]]
    ) -> RebalanceResult:
        """The answers of the pings of `plan` (made outside the lock), as data."""
        with self._lock:
            return self._pool.apply_pings(plan, results, time.monotonic())


RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after a failed attempt."""

    retry: bool
    """Try the next server (the server was reported failed to the pool)."""
    server_failed: bool
    """The server did not answer: report it to the pool."""
    error: ControlPlaneError
    """The error to raise if not retrying (or once retries run out)."""


def classify(
    error: grpc.RpcError, method: str, server: Server, *, deadline_passed: bool
) -> Verdict:
    """The failover rule for one failed attempt of `method` ("Service/Method").

    A transport failure (UNAVAILABLE or DEADLINE_EXCEEDED without the agent's own
    error details) marks the server failed. It is retried on the next server only
    if the RPC is idempotent and the call's deadline has not passed. An error the
    agent itself answered (with controlplane error details) is the caller's
    answer and never retried; a draining agent's UNAVAILABLE is the exception to
    that, because it asks clients to move on.
    """
    code, details, trailers = rpc_error_parts(error)
    mapped = error_from_status(code, details, trailers, method=method, server=server.address)
    from_agent = is_from_agent(trailers)
    transport_failure = code in RETRYABLE_CODES and not from_agent
    draining = code == grpc.StatusCode.UNAVAILABLE and from_agent and "drain" in details.lower()
    if not (transport_failure or draining):
        return Verdict(retry=False, server_failed=False, error=mapped)
    if not is_idempotent(method):
        return Verdict(
            retry=False,
            server_failed=True,
            error=Unavailable(
                f"{method} on {server.address} failed ({code.name}: {details}); it is not "
                "idempotent, so it was not repeated and MAY OR MAY NOT have been applied: "
                "check the state before calling again"
            ),
        )
    if deadline_passed:
        return Verdict(
            retry=False,
            server_failed=True,
            error=DeadlineExceeded(
                f"{method}: no server answered within the deadline (last: {server.address}, "
                f"{code.name}: {details}); raise the timeout or check the agents"
            ),
        )
    return Verdict(retry=True, server_failed=True, error=mapped)


def exhausted(method: str, tried: Sequence[Server], last: ControlPlaneError | None) -> Unavailable:
    """The error once every known server failed one attempt."""
    names = ", ".join(s.address for s in tried) or "none"
    cause = f"; last error: {last}" if last is not None else ""
    return Unavailable(
        f"{method}: no server answered (tried {names}){cause}; check that the agents "
        "are running and that the client's seeds name them"
    )
