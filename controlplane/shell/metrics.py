"""The agent's Prometheus metrics: what each is, and how a scrape reads it.

Most figures already exist as the components' own counters (`GossipStats`,
`MembershipStats`, `UdpStats`, the loop-lag probe, the heartbeat tracker, the ring
directory): `AgentCollector` reads them when Prometheus scrapes, so they cost
nothing between scrapes. What nothing else counts is counted here, each at the
cost of what happened: RPCs by method and status code with their latency
(`RpcMetrics`, called by `api/errors.guard` when an RPC ends, and only when
metrics are on), member events and flaps (`MemberEventMetrics`, fed every member
event) and leader changes.

Names follow memberlist's and Serf's telemetry where one exists (`memberlist.msg.
suspect` becomes `memberlist_msg_suspect_total`), and go-grpc-prometheus's for
RPCs (`grpc_server_handled_total`), so dashboards written for those read these.
docs/operations.md lists every metric. A scrape is O(rings + pools + drop
reasons), never O(members): member counts by status are kept as statuses change.

The module imports `prometheus_client`, which loads `ssl`: it is imported only by
an agent started with `metrics_addr`.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from controlplane.membership import EventType, MemberEvent, MemberStatus
from controlplane.shell.runtime import Event

if TYPE_CHECKING:
    from controlplane.agent import Agent
    from controlplane.election import LeaderView
    from controlplane.shell.queries import QueryDriver

# Latency buckets in seconds: from a cached answer on loopback (well under a
# millisecond) to a Watch or a call waiting for a leader.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# serf/config.go DefaultConfig: FlapTimeout 60s. A member that joins again within this
# long of failing counts as a flap (serf.member.flap).
FLAP_TIMEOUT = 60.0
# Failed members whose failure time is kept for flap detection; past this, the
# oldest are forgotten (a flap after a mass failure of this size may go uncounted).
FAILURES_KEPT = 10_000


@dataclass(slots=True)
class _Latency:
    buckets: list[int] = field(default_factory=lambda: [0] * len(RPC_BUCKETS))
    count: int = 0
    total: float = 0.0


class RpcMetrics:
    """RPCs handled, by service, method, type and status code, and their latency.

    `guard` calls `observe` once per RPC, when it ends: a dictionary update and a
    bisection, a fraction of a microsecond."""

    def __init__(self) -> None:
        # (path, streaming) -> started; (path, streaming, code) -> handled.
        self.started: Counter[tuple[str, bool]] = Counter()
        self.handled: Counter[tuple[str, bool, grpc.StatusCode]] = Counter()
        self._latency: dict[tuple[str, bool], _Latency] = {}

    def start(self, path: str, streaming: bool) -> None:
        self.started[path, streaming] += 1

    def observe(self, path: str, streaming: bool, code: grpc.StatusCode, seconds: float) -> None:
        self.handled[path, streaming, code] += 1
        latency = self._latency.get((path, streaming))
        if latency is None:
            latency = self._latency[path, streaming] = _Latency()
        index = bisect.bisect_left(RPC_BUCKETS, seconds)
        if index < len(RPC_BUCKETS):
            latency.buckets[index] += 1
        latency.count += 1
        latency.total += seconds

    def families(self) -> Iterator[Metric]:
        labels = ["grpc_service", "grpc_method", "grpc_type"]
        started = CounterMetricFamily(
            "grpc_server_started", "RPCs started on the server.", labels=labels
        )
        for (path, streaming), count in sorted(self.started.items()):
            started.add_metric(_rpc_labels(path, streaming), count)
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status.",
            labels=[*labels, "grpc_code"],
        )
        for (path, streaming, code), count in sorted(
            self.handled.items(), key=lambda item: (item[0][0], item[0][1], item[0][2].name)
        ):
            handled.add_metric([*_rpc_labels(path, streaming), code.name], count)
        histogram = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its end, as the handler saw it.",
            labels=labels,
        )
        for (path, streaming), latency in sorted(self._latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(RPC_BUCKETS, latency.buckets, strict=True):
                cumulative += count
                buckets.append((_float_text(bound), float(cumulative)))
            buckets.append(("+Inf", float(latency.count)))
            histogram.add_metric(_rpc_labels(path, streaming), buckets, latency.total)
        yield from (started, handled, histogram)


def _rpc_labels(path: str, streaming: bool) -> list[str]:
    service, _, method = path.lstrip("/").partition("/")
    return [service, method, "server_stream" if streaming else "unary"]


def _float_text(value: float) -> str:
    return repr(float(value))


class MemberEventMetrics:
    """Member events by type, and flaps: members that join again soon after failing
    (Serf's serf.member.flap). Fed every member event; O(members in the event)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.events: Counter[EventType] = Counter()
        self.flaps = 0
        self.user_events: Counter[str] = Counter()
        # name -> when it failed, oldest first.
        self._failed_at: dict[str, float] = {}

    def on_event(self, event: Event) -> None:
        if not isinstance(event, MemberEvent):
            self.events[EventType.USER] += 1
            return
        self.events[event.type] += event_size(event)
        now = self._clock()
        for member in event.members:
            if event.type is EventType.MEMBER_FAILED:
                self._failed_at.pop(member.name, None)
                self._failed_at[member.name] = now
                if len(self._failed_at) > FAILURES_KEPT:
                    del self._failed_at[next(iter(self._failed_at))]
            elif event.type is EventType.MEMBER_JOIN:
                failed = self._failed_at.pop(member.name, None)
                if failed is not None and now - failed < FLAP_TIMEOUT:
                    self.flaps += 1
            elif event.type in (EventType.MEMBER_LEAVE, EventType.MEMBER_REAP):
                self._failed_at.pop(member.name, None)


def event_size(event: MemberEvent) -> int:
    """Members in an event: Serf counts serf.member.<type> once per member."""
    return len(event.members)


class AgentCollector(Collector):
    """Every agent metric, read from the running agent when scraped."""

    def __init__(
        self,
        agent: Agent,
        rpcs: RpcMetrics,
        members: MemberEventMetrics,
        leader_changes: Callable[[], int],
    ) -> None:
        self._agent = agent
        self._rpcs = rpcs
        self._members = members
        self._leader_changes = leader_changes

    def collect(self) -> Iterable[Metric]:
        agent = self._agent
        if not agent.started:
            return
        parts = agent.components
        layer, runtime = parts.layer, parts.runtime
        node = layer.node
        gossip, membership, udp = node.stats, layer.stats, runtime.udp.stats

        yield _gauge(
            "memberlist_health_score",
            "Lifeguard's awareness score (0 healthy).",
            node.health_score,
        )
        yield _counter(
            "memberlist_msg_suspect", "Suspicions this member raised.", gossip.suspicions_raised
        )
        yield _counter(
            "memberlist_msg_dead",
            "Members this member declared dead.",
            gossip.members_declared_dead,
        )
        yield _counter(
            "memberlist_msg_refute", "Suspicions of this member it refuted.", gossip.refutations
        )
        probes = CounterMetricFamily(
            "memberlist_probes",
            "Probes sent, by kind: direct (the round), indirect (through peers), suspicion"
            " (a suspect probed on learning of it), hinted (a closed attendance stream).",
            labels=["kind"],
        )
        probes.add_metric(["direct"], gossip.probes_sent)
        probes.add_metric(["indirect"], gossip.indirect_probes_sent)
        probes.add_metric(["suspicion"], gossip.suspicion_probes_sent)
        probes.add_metric(["hinted"], gossip.hinted_probes)
        yield probes
        yield _counter(
            "memberlist_probes_failed", "Probes without an ack in time.", gossip.probes_failed
        )
        stream_pings = CounterMetricFamily(
            "memberlist_tcp_pings",
            "Pings over the gRPC port after a UDP probe went unanswered (memberlist's TCP"
            " fallback), by outcome: sent, answered (alive, UDP to it lost), failed; and"
            " served (answered for others).",
            labels=["outcome"],
        )
        stream_pings.add_metric(["sent"], gossip.stream_pings_sent)
        stream_pings.add_metric(["answered"], gossip.stream_pings_answered)
        stream_pings.add_metric(["failed"], gossip.stream_pings_failed)
        stream_pings.add_metric(["served"], gossip.stream_pings_served)
        yield stream_pings
        yield _counter(
            "memberlist_late_acks",
            "Acks after their probe turned into a suspicion.",
            gossip.late_acks,
        )
        yield _counter(
            "memberlist_udp_received", "Gossip packets received.", gossip.packets_received
        )
        yield _counter("memberlist_udp_sent", "Gossip packets sent.", gossip.packets_sent)
        yield _counter(
            "memberlist_udp_received_bytes", "Gossip bytes received.", udp.received_bytes
        )
        yield _counter("memberlist_udp_sent_bytes", "Gossip bytes sent.", udp.sent_bytes)
        yield _counter(
            "memberlist_udp_send_dropped", "Datagrams the socket refused to send.", udp.send_dropped
        )
        push_pulls = CounterMetricFamily(
            "memberlist_pushpull", "Push-pull state exchanges, by outcome.", labels=["result"]
        )
        push_pulls.add_metric(["started"], gossip.push_pulls_started)
        push_pulls.add_metric(["failed"], gossip.push_pulls_failed)
        push_pulls.add_metric(["served"], gossip.push_pulls_served)
        yield push_pulls
        yield _by_reason("memberlist_dropped", "Gossip input refused, by reason.", gossip.dropped)
        yield _gauge(
            "memberlist_queue_broadcasts",
            "Gossip broadcasts waiting to be sent.",
            node.broadcast_queue_depth,
        )

        statuses = GaugeMetricFamily("serf_members", "Members known, by status.", labels=["status"])
        for status in MemberStatus:
            if status is not MemberStatus.NONE:
                statuses.add_metric([status.name.lower()], layer.status_count(status))
        yield statuses
        events = CounterMetricFamily(
            "serf_member_events",
            "Members in member events (serf.member.join and the others), by type.",
            labels=["type"],
        )
        for kind in EventType:
            if kind is not EventType.USER:
                events.add_metric([kind.value], self._members.events[kind])
        yield events
        yield _counter(
            "serf_member_flap",
            "Members that joined again within 60 s of failing.",
            self._members.flaps,
        )
        yield _counter(
            "serf_events", "User events delivered to this agent.", membership.user_events_delivered
        )
        yield _counter(
            "serf_events_fired", "User events fired on this agent.", membership.user_events_fired
        )
        yield _counter(
            "serf_events_duplicate",
            "User events received again and dropped.",
            membership.user_events_duplicate,
        )
        yield _by_reason("serf_dropped", "Membership input refused, by reason.", membership.dropped)
        yield _gauge("serf_lamport_time", "The membership Lamport clock.", layer.lamport_time)
        yield _gauge("serf_event_lamport_time", "The user-event Lamport clock.", layer.event_time)
        if layer.coordinates is not None:
            vivaldi = layer.coordinates.stats
            yield _counter(
                "serf_coordinate_updates",
                "Round trips applied to this agent's network coordinate.",
                vivaldi.updates,
            )
            yield _by_reason(
                "serf_coordinate_rejected",
                "Coordinates or round trips from acks refused, by reason.",
                vivaldi.rejected,
            )
            yield _counter(
                "serf_coordinate_resets",
                "Times this agent's coordinate became invalid and restarted at the origin.",
                vivaldi.resets,
            )
        yield from _query_families(parts.queries)

        lag = agent.loop_lag.stats
        yield _gauge("controlplane_loop_lag_max_seconds", "Longest event-loop delay seen.", lag.max)
        yield _gauge(
            "controlplane_loop_lag_p99_seconds",
            "99th percentile of recent loop delays.",
            lag.percentile(0.99),
        )
        yield _counter(
            "controlplane_loop_lag_over_threshold", "Loop delays over 20 ms.", lag.over_threshold
        )

        yield _gauge(
            "controlplane_heartbeat_clients",
            "Clients heartbeating to this agent.",
            parts.heartbeats.client_count,
        )
        yield _gauge("controlplane_pools", "Server pools this agent holds.", parts.pools.pool_count)
        election = parts.election
        yield _gauge(
            "controlplane_election_epoch",
            "The highest leader epoch this agent knows.",
            election.election.epoch,
        )
        view = election.leader()
        yield _gauge(
            "controlplane_election_is_leader",
            "1 while this agent leads.",
            1 if view is not None and view.is_self else 0,
        )
        yield _counter(
            "controlplane_leader_changes",
            "Leadership changes this agent saw.",
            self._leader_changes(),
        )
        rings = parts.rings.directory
        sizes = GaugeMetricFamily("controlplane_ring_nodes", "Nodes on each ring.", labels=["ring"])
        versions = GaugeMetricFamily(
            "controlplane_ring_version", "Each ring's version.", labels=["ring"]
        )
        for name in rings.names():
            ring = rings.view(name)
            sizes.add_metric([name], len(ring.entries))
            versions.add_metric([name], ring.version)
        yield sizes
        yield versions
        yield from self._rpcs.families()


def _query_families(driver: QueryDriver) -> Iterator[Metric]:
    """Serf's query telemetry (serf.queries, serf.query_acks, serf.query_responses) and
    what the agent's handlers did."""
    stats = driver.queries.stats
    yield _counter(
        "serf_queries",
        "New queries this agent received, whether its filters matched or not.",
        stats.received + stats.filtered,
    )
    yield _counter("serf_queries_asked", "Queries asked through this agent.", stats.asked)
    yield _counter("serf_query_acks", "Acks collected for queries this agent asked.", stats.acks)
    yield _counter(
        "serf_query_responses",
        "Responses collected for queries this agent asked.",
        stats.responses,
    )
    yield _counter("serf_query_relayed", "Answers this agent forwarded for others.", stats.relayed)
    yield _by_reason("serf_query_dropped", "Query input refused, by reason.", stats.dropped)
    yield _gauge("serf_query_lamport_time", "The query Lamport clock.", driver.queries.lamport_time)
    handlers = driver.handlers.stats
    family = CounterMetricFamily(
        "controlplane_query_handlers", "Query handler processes, by outcome.", labels=["result"]
    )
    for result, count in (
        ("started", handlers.started),
        ("responded", handlers.responded),
        ("failed", handlers.failed),
        ("timed_out", handlers.timed_out),
        ("skipped_busy", handlers.skipped_busy),
    ):
        family.add_metric([result], count)
    yield family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _by_reason(name: str, documentation: str, counts: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["reason"])
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], count)
    return family


class AgentMetrics:
    """The counts the agent keeps for its metrics, built when `metrics_addr` is set."""

    def __init__(self) -> None:
        self.rpcs = RpcMetrics()
        self.members = MemberEventMetrics()
        self.leader_changes = 0

    def count_leader_changes(
        self, publish: Callable[[LeaderView | None], None]
    ) -> Callable[[LeaderView | None], None]:
        """`publish`, counting each leadership change it is given."""

        def counted(view: LeaderView | None) -> None:
            self.leader_changes += 1
            publish(view)

        return counted

    def registry(self, agent: Agent) -> CollectorRegistry:
        """A registry with the agent's metrics and the process's (CPU, memory, files)."""
        from prometheus_client.gc_collector import GCCollector
        from prometheus_client.process_collector import ProcessCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            AgentCollector(agent, self.rpcs, self.members, lambda: self.leader_changes)
        )
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format of every metric in `registry`."""
    from prometheus_client.exposition import generate_latest

    return generate_latest(registry)
