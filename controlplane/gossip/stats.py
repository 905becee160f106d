"""Counters of one gossip member, for metrics and for tests of the failure paths."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class GossipStats:
    """Monotonic counters; ``dropped`` counts refused input by reason."""

    packets_received: int = 0
    packets_sent: int = 0
    messages_received: int = 0
    probes_sent: int = 0
    probes_failed: int = 0
    indirect_probes_sent: int = 0
    # Probes sent at once because a suspicion was learned (GossipConfig.suspicion_probes).
    suspicion_probes_sent: int = 0
    # Probes sent out of turn because the member's connection to us closed
    # (GossipNode.probe_now).
    hinted_probes: int = 0
    # Acks that came after their probe had already turned into a suspicion.
    late_acks: int = 0
    # memberlist's TCP fallback ping (GossipConfig.tcp_pings): started after a probe's UDP
    # ping went unanswered; answered (the member is alive, UDP to it is not); failed
    # (refused, timed out or a wrong answer); and pings of this member served.
    stream_pings_sent: int = 0
    stream_pings_answered: int = 0
    stream_pings_failed: int = 0
    stream_pings_served: int = 0
    suspicions_raised: int = 0
    members_declared_dead: int = 0
    refutations: int = 0
    push_pulls_started: int = 0
    push_pulls_failed: int = 0
    push_pulls_served: int = 0
    reconnect_attempts: int = 0
    members_reaped: int = 0
    # Reasons: oversized, truncated, frame_version, frame_flags, label, plaintext,
    # encrypted_without_keyring, decrypt, decode, protocol_version, unknown_message,
    # invalid_message, wrong_target, address_conflict, node_limit, internal_error,
    # invalid_name (controlplane.gossip.names), incarnation_step (gossip/incarnation.py).
    dropped: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1
