"""Election parameters (``ElectionConfig``) and the check that they are safe together.

The defaults follow hnatsd's health agent (``health/config.go``, ``MembershipCfg``):
``LeaseTime`` is "the minimum time the leader is elected for", ``BeatDur`` is how
often the leader heartbeats and ``MaxClockSkew`` is "max we allow for clocks to be
out of sync". hnatsd measures the lease against wall-clock timestamps; here every
quantity is a duration measured on each member's own monotonic clock, so
``max_clock_skew`` is the margin that absorbs clock-rate drift and scheduling
jitter instead of wall-clock offset.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.configerror import ConfigError
from controlplane.election.lease import is_safe, min_safe_skew

# hnatsd MembershipCfg.LeaseTime default (see ElectionConfig.lease_time); also what
# a holder that does not state its lease_time on the wire ran with.
DEFAULT_LEASE_TIME = 10.0


@dataclass(frozen=True, slots=True)
class ElectionConfig:
    # hnatsd MembershipCfg.LeaseTime: "the minimum time the leader is elected
    # for. Defaults to 10 sec." (later hnatsd defaults it to 12 s; we keep 10 s).
    lease_time: float = DEFAULT_LEASE_TIME
    # hnatsd MembershipCfg.BeatDur defaults to 100 ms (gnatsd) and later 3 s
    # (hnatsd). 1 s gives ten renewals per lease, so nine consecutive lost
    # renewal rounds are survived, and keeps failover under lease + skew + 2 s
    # while costing one small broadcast (plus one vote per voter) a second.
    beat_interval: float = 1.0
    # hnatsd MembershipCfg.MaxClockSkew: "max we allow for clocks to be out of
    # sync. default to 1 second". Followers and voters add it to the lease; the
    # holder does not, which is what keeps the holder's belief strictly shorter.
    max_clock_skew: float = 1.0
    # Bound on the rate error of any member's monotonic clock (0.01 = +-1 %).
    # Crystal oscillators are within 100 ppm; 1 % also covers VM steal and
    # slewing. The skew margin must cover 2 * drift over one lease (validate()).
    max_drift: float = 0.01
    # 0 = off: every alive eligible member this holder can see must grant each
    # renewal. N > 0: a majority (N // 2 + 1) of the N expected eligible voters
    # must grant, so at most one leader exists even across partitions.
    quorum: int = 0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def follower_lease(self) -> float:
        """How long a voter keeps its grant and a follower trusts a renewal, from receipt."""
        return self.lease_time + self.max_clock_skew

    @property
    def majority(self) -> int:
        """Grants a holder needs in quorum mode (0 when quorum mode is off)."""
        return self.quorum // 2 + 1 if self.quorum > 0 else 0

    def validate(self) -> None:
        for field_name in ("lease_time", "beat_interval"):
            value = getattr(self, field_name)
            if not value > 0.0:
                raise ConfigError(f"{field_name} must be > 0, got {value!r}")
        if not self.max_clock_skew >= 0.0:
            raise ConfigError(f"max_clock_skew must be >= 0, got {self.max_clock_skew!r}")
        if not 0.0 <= self.max_drift < 0.5:
            raise ConfigError(f"max_drift must be in [0, 0.5), got {self.max_drift!r}")
        if self.quorum < 0:
            raise ConfigError(f"quorum must be >= 0, got {self.quorum!r}")
        if self.beat_interval * 2 > self.lease_time:
            # At least two renewals per lease, or one lost renewal loses the lease.
            raise ConfigError(
                f"beat_interval ({self.beat_interval:g} s) must be at most half of"
                f" lease_time ({self.lease_time:g} s): one lost renewal would end the lease"
            )
        if not is_safe(self.lease_time, self.max_clock_skew, self.max_drift):
            floor = min_safe_skew(self.lease_time, self.max_drift)
            raise ConfigError(
                f"max_clock_skew ({self.max_clock_skew:g} s) must exceed"
                f" 2 * max_drift * lease_time / (1 - max_drift) = {floor:.3f} s"
                f" for lease_time {self.lease_time:g} s and max_drift {self.max_drift:g}:"
                " otherwise a holder may still believe it leads after its voters' grants end"
            )
