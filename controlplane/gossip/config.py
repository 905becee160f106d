"""Gossip configuration: one frozen dataclass and the ``lan``/``wan``/``local`` profiles.

Every default is memberlist's (``config.go``), cited where it is set, except the
partition-healing and reaping knobs, which take Serf's numbers (``serf/config.go``).
Durations are seconds as floats.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

# Environment variable that turns strict mode on by default ("1", "true" or "yes"):
# tests set it, so the agent processes they start inherit it.
STRICT_ENVIRONMENT = "CONTROLPLANE_STRICT"


def strict_from_environment() -> bool:
    """Whether ``CONTROLPLANE_STRICT`` asks for strict mode (the default of ``strict``)."""
    return os.environ.get(STRICT_ENVIRONMENT, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Tunables of one gossip member. Build with :meth:`lan`, :meth:`wan` or :meth:`local`."""

    # memberlist config.go DefaultLANConfig: ProbeInterval 1s (failure check every second)
    probe_interval: float = 1.0
    # memberlist config.go DefaultLANConfig: ProbeTimeout 500ms (reasonable RTT for a LAN)
    probe_timeout: float = 0.5
    # memberlist config.go DefaultLANConfig: IndirectChecks 3
    indirect_checks: int = 3
    # memberlist config.go DefaultLANConfig: RetransmitMult 4 (4 * ceil(log10(N+1)) sends)
    retransmit_mult: int = 4
    # memberlist config.go DefaultLANConfig: SuspicionMult 4
    suspicion_mult: int = 4
    # memberlist config.go DefaultLANConfig: SuspicionMaxTimeoutMult 6
    suspicion_max_timeout_mult: int = 6
    # memberlist config.go DefaultLANConfig: AwarenessMaxMultiplier 8 (probes back off to 8 s)
    awareness_max_multiplier: int = 8
    # memberlist config.go DefaultLANConfig: GossipNodes 3
    gossip_nodes: int = 3
    # memberlist config.go DefaultLANConfig: GossipInterval 200ms
    gossip_interval: float = 0.2
    # memberlist config.go DefaultLANConfig: GossipToTheDeadTime 30s (same as push/pull)
    gossip_to_the_dead_time: float = 30.0
    # memberlist config.go DefaultLANConfig: PushPullInterval 30s
    push_pull_interval: float = 30.0
    # memberlist config.go DefaultLANConfig: TCPTimeout 10s; bounds one push-pull exchange
    push_pull_timeout: float = 10.0
    # memberlist config.go DefaultLANConfig: UDPBufferSize 1400 (largest datagram we send)
    udp_buffer_size: int = 1400
    # memberlist memberlist.go MetaMaxSize 512
    max_meta_size: int = 512
    # Largest datagram accepted: the largest UDP payload over IPv4. Bigger input is garbage.
    max_packet_size: int = 65507
    # Largest push-pull payload accepted (frame included): bounds memory on hostile input.
    max_push_pull_size: int = 16 * 1024 * 1024
    # Bound on the node map, so hostile or corrupt input cannot grow memory without limit.
    max_nodes: int = 65536
    # serf config.go DefaultConfig: MaxQueueDepth 4096; older broadcasts are pruned beyond it.
    max_broadcast_queue_depth: int = 4096
    # serf config.go DefaultConfig: ReconnectInterval 30s (retry failed members and seeds)
    reconnect_interval: float = 30.0
    # serf config.go DefaultConfig: ReconnectTimeout 24h (give up on a failed member after it)
    reconnect_timeout: float = 24 * 3600.0
    # serf config.go DefaultConfig: TombstoneTimeout 24h. Dead and left members leave the node
    # map this long after their last state change (memberlist keeps them forever).
    dead_node_reap_time: float = 24 * 3600.0
    # memberlist config.go DeadNodeReclaimTime 0: a dead (not left) member's name may be taken by
    # a new address only after this long; 0 disables reclaiming.
    dead_node_reclaim_time: float = 0.0
    # Lifeguard buddy system: a probe of a suspect member carries the suspicion so the member
    # can refute at once. memberlist always does this (state.go probeNode); the switch exists so
    # plain SWIM can be measured against Lifeguard (bench/gossip_sim.py).
    buddy_system: bool = True
    # memberlist config.go DisableTcpPings false: when a probe's UDP ping goes unanswered, the
    # member is also pinged over its gRPC port (memberlist: its TCP port), and an answer there
    # before the probe's interval ends keeps it from being suspected. A member whose UDP is
    # filtered but whose stream port works then stays alive instead of flapping.
    tcp_pings: bool = True
    # Beyond memberlist: the probe timeout follows the measured round trip of direct probes
    # (srtt + 4 * rttvar, as TCP's RTO: about the 99th percentile memberlist asks ProbeTimeout
    # to be), within [probe_timeout_floor, probe_timeout], times health score + 1; a probe
    # without an ack suspects after three such timeouts instead of the whole probe interval.
    # False: memberlist's fixed ProbeTimeout and the whole interval (kept to measure against).
    adaptive_probe_timeout: bool = True
    # Lower bound of the adaptive probe timeout. An agent lets one callback hold its event loop
    # for up to 20 ms (fleet work is sliced to that), so an ack may wait that long at the target
    # and again here: a bound of 2 * 20 ms keeps a busy but healthy member answering in time
    # whatever the network's round trip.
    probe_timeout_floor: float = 0.04
    # Beyond memberlist: a member that learns of a suspicion probes the suspect at once, with
    # memberlist's full timing (ProbeTimeout, then indirect probes until the interval ends),
    # instead of at its turn in the round robin. Independent confirmations then arrive within
    # one probe interval, so Lifeguard's timeout reaches its minimum early for a dead member,
    # while a live one hears of the suspicion from each of them (buddy system) and refutes.
    # In large clusters only about 3 * (suspicion_mult - 2) members do so
    # (formulas.suspicion_probe_chance). False: memberlist.
    suspicion_probes: bool = True
    # Strict mode: an unexpected exception inside the core (a bug: malformed input is
    # refused by codec.parse and explicit checks before any handler runs) is re-raised
    # instead of counted. Off in production: one bad peer's input must not take down an
    # agent, so the exception is counted (stats.dropped["internal_error"]) and the
    # message dropped. On in tests and simulators, where a bug must fail the test. The
    # default comes from the CONTROLPLANE_STRICT environment variable.
    strict: bool = field(default_factory=strict_from_environment)

    @classmethod
    def lan(cls, **overrides: Any) -> GossipConfig:
        """memberlist DefaultLANConfig."""
        return replace(cls(), **overrides)

    @classmethod
    def wan(cls, **overrides: Any) -> GossipConfig:
        """memberlist DefaultWANConfig: slower, more tolerant probing for high latency."""
        base = cls(
            # memberlist config.go DefaultWANConfig: TCPTimeout 30s
            push_pull_timeout=30.0,
            # memberlist config.go DefaultWANConfig: SuspicionMult 6
            suspicion_mult=6,
            # memberlist config.go DefaultWANConfig: PushPullInterval 60s
            push_pull_interval=60.0,
            # memberlist config.go DefaultWANConfig: ProbeTimeout 3s
            probe_timeout=3.0,
            # memberlist config.go DefaultWANConfig: ProbeInterval 5s
            probe_interval=5.0,
            # memberlist config.go DefaultWANConfig: GossipNodes 4
            gossip_nodes=4,
            # memberlist config.go DefaultWANConfig: GossipInterval 500ms
            gossip_interval=0.5,
            # memberlist config.go DefaultWANConfig: GossipToTheDeadTime 60s
            gossip_to_the_dead_time=60.0,
        )
        return replace(base, **overrides)

    @classmethod
    def local(cls, **overrides: Any) -> GossipConfig:
        """memberlist DefaultLocalConfig: fast settings for loopback and tests."""
        base = cls(
            # memberlist config.go DefaultLocalConfig: TCPTimeout 1s
            push_pull_timeout=1.0,
            # memberlist config.go DefaultLocalConfig: IndirectChecks 1
            indirect_checks=1,
            # memberlist config.go DefaultLocalConfig: RetransmitMult 2
            retransmit_mult=2,
            # memberlist config.go DefaultLocalConfig: SuspicionMult 3
            suspicion_mult=3,
            # memberlist config.go DefaultLocalConfig: PushPullInterval 15s
            push_pull_interval=15.0,
            # memberlist config.go DefaultLocalConfig: ProbeTimeout 200ms
            probe_timeout=0.2,
            # memberlist config.go DefaultLocalConfig: ProbeInterval 1s
            probe_interval=1.0,
            # memberlist config.go DefaultLocalConfig: GossipInterval 100ms
            gossip_interval=0.1,
            # memberlist config.go DefaultLocalConfig: GossipToTheDeadTime 15s
            gossip_to_the_dead_time=15.0,
        )
        return replace(base, **overrides)

    def __post_init__(self) -> None:
        positive = {
            "probe_interval": self.probe_interval,
            "probe_timeout": self.probe_timeout,
            "gossip_interval": self.gossip_interval,
            "push_pull_interval": self.push_pull_interval,
            "push_pull_timeout": self.push_pull_timeout,
            "reconnect_interval": self.reconnect_interval,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.probe_timeout > self.probe_interval:
            raise ValueError("probe_timeout must not exceed probe_interval")
        if not 0 < self.probe_timeout_floor <= self.probe_timeout:
            raise ValueError("probe_timeout_floor must be positive and at most probe_timeout")
        if self.udp_buffer_size < 512:
            raise ValueError("udp_buffer_size must be at least 512 bytes")
        if self.suspicion_mult < 1 or self.suspicion_max_timeout_mult < 1:
            raise ValueError("suspicion multipliers must be at least 1")
        if self.awareness_max_multiplier < 1:
            raise ValueError("awareness_max_multiplier must be at least 1")


PROFILES = {
    "lan": GossipConfig.lan,
    "wan": GossipConfig.wan,
    "local": GossipConfig.local,
}
