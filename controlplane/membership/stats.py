"""Counters of the membership layer, for metrics and for tests of the failure paths."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class MembershipStats:
    """Monotonic counters; ``dropped`` counts refused input by reason."""

    join_intents_received: int = 0
    leave_intents_received: int = 0
    user_events_fired: int = 0
    user_events_delivered: int = 0
    # Received again (gossip retransmission, duplication, push-pull replay): dropped.
    user_events_duplicate: int = 0
    # Older than the event buffer or the minimum event time: dropped.
    user_events_old: int = 0
    rebroadcasts: int = 0
    members_reaped: int = 0
    members_pruned: int = 0
    # Reasons: decode, invalid_message, state_decode, intent_limit, rebroadcast_too_large,
    # lamport_out_of_range (a time too far above the local clock, lamport.py).
    dropped: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1
