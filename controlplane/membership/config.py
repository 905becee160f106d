"""Membership (Serf layer) configuration: one frozen dataclass with Serf's defaults.

Every default is Serf's (``serf/config.go`` ``DefaultConfig`` unless said
otherwise), cited where it is set. Durations are seconds as floats. A bad value
raises :class:`InvalidConfig`, which is both the project's ``InvalidArgument``
(naming the field and the limit) and a ``ValueError`` (like ``GossipConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.errors import InvalidArgument

# serf/serf.go UserEventSizeLimit = 9 * 1024: the hard cap on name + payload of a user event.
USER_EVENT_SIZE_HARD_LIMIT = 9 * 1024


class InvalidConfig(InvalidArgument, ValueError):
    """A :class:`MembershipConfig` field is out of range."""


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """Tunables of the membership layer (Serf); the gossip core has its own ``GossipConfig``."""

    # serf config.go CoalescePeriod (unset, so 0 = off): member events seen within this
    # window are merged into one event per type. Coalescing runs only when both this and
    # quiescent_period are positive (serf.go Create).
    coalesce_period: float = 0.0
    # serf config.go QuiescentPeriod (unset, so 0): a coalesce window ends early after this
    # long without a new member event.
    quiescent_period: float = 0.0
    # serf config.go UserCoalescePeriod (unset, so 0 = off): same for user events fired
    # with coalesce=True (only the newest per name is delivered).
    user_coalesce_period: float = 0.0
    # serf config.go UserQuiescentPeriod (unset, so 0).
    user_quiescent_period: float = 0.0
    # serf config.go ReconnectInterval 30s. Applied to the gossip core, which runs the
    # reconnect attempts to failed members (and seeds); the layer does not double them.
    reconnect_interval: float = 30.0
    # serf config.go ReconnectTimeout 24h: a failed member is retried this long, then reaped
    # (member-reap). Also applied to the gossip core's reconnect.
    reconnect_timeout: float = 24 * 3600.0
    # serf config.go TombstoneTimeout 24h: a left member is kept (as left) this long.
    tombstone_timeout: float = 24 * 3600.0
    # serf config.go ReapInterval 15s: how often failed/left members and intents are reaped.
    reap_interval: float = 15.0
    # serf config.go RecentIntentTimeout 5m: how long an intent about an unknown member is kept.
    recent_intent_timeout: float = 300.0
    # serf config.go EventBuffer 512: user events remembered for de-duplication and push-pull.
    event_buffer_size: int = 512
    # serf config.go UserEventSizeLimit 512: bytes of name + payload of one user event.
    user_event_size_limit: int = 512
    # serf config.go BroadcastTimeout 5s: the longest a leave waits for its broadcasts.
    broadcast_timeout: float = 5.0
    # serf config.go LeavePropagateDelay 1s: after the leave broadcasts went out, stay up this
    # long to answer probes while the leave spreads.
    leave_propagate_delay: float = 1.0
    # Emit SnapshotRecord effects (Serf writes a snapshot when SnapshotPath is set). A shell
    # without a snapshot file may ignore them or turn them off here.
    snapshot_records: bool = True
    # serf/snapshot.go snapshotSizeLimit 128 KiB: the smallest snapshot that gets compacted.
    snapshot_min_compact_size: int = 128 * 1024
    # serf config.go DisableCoordinates (false): no Vivaldi coordinate is computed, sent
    # in acks or learned from them.
    disable_coordinates: bool = False

    def __post_init__(self) -> None:
        non_negative = {
            "coalesce_period": self.coalesce_period,
            "quiescent_period": self.quiescent_period,
            "user_coalesce_period": self.user_coalesce_period,
            "user_quiescent_period": self.user_quiescent_period,
            "reconnect_timeout": self.reconnect_timeout,
            "tombstone_timeout": self.tombstone_timeout,
            "recent_intent_timeout": self.recent_intent_timeout,
            "broadcast_timeout": self.broadcast_timeout,
            "leave_propagate_delay": self.leave_propagate_delay,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise InvalidConfig.for_field(name, f"must not be negative, got {value}")
        for name, value in {
            "reconnect_interval": self.reconnect_interval,
            "reap_interval": self.reap_interval,
        }.items():
            if value <= 0:
                raise InvalidConfig.for_field(name, f"must be positive, got {value}")
        if self.event_buffer_size < 1:
            raise InvalidConfig.for_field("event_buffer_size", "must be at least 1")
        if not 1 <= self.user_event_size_limit <= USER_EVENT_SIZE_HARD_LIMIT:
            raise InvalidConfig.for_field(
                "user_event_size_limit",
                f"must be 1 to {USER_EVENT_SIZE_HARD_LIMIT} bytes, "
                f"got {self.user_event_size_limit}",
            )
        if self.snapshot_min_compact_size < 1:
            raise InvalidConfig.for_field("snapshot_min_compact_size", "must be at least 1")

    @property
    def member_coalescing(self) -> bool:
        """serf.go Create: member events are coalesced only when both periods are set."""
        return self.coalesce_period > 0 and self.quiescent_period > 0

    @property
    def user_coalescing(self) -> bool:
        return self.user_coalesce_period > 0 and self.user_quiescent_period > 0
