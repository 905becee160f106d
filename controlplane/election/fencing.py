"""Fencing epochs: every new leadership gets a number higher than any seen before.

A candidate claims ``highest epoch seen + 1``; a voter grants a new leadership
only for an epoch above every epoch it has granted before, so two leaderships
granted by a common voter never share an epoch (in quorum mode any two
majorities share a voter, so epochs are unique cluster-wide). Without quorum,
two partitions may each elect a leader with the same number; the total order is
then the token ``(epoch, holder name)``, which is what a holder compares when
two established leaders meet after a partition heals.
"""

from __future__ import annotations

from controlplane.election.messages import MAX_COUNTER

FencingToken = tuple[int, str]

# The highest epoch believed from the wire or from `election.epoch`: the valid range
# is [0, MAX_EPOCH]. A new leadership takes one epoch; at one a second, 2**62 lasts
# 10**11 years, so a legitimate cluster never comes near it. Kept a quarter of the
# way below the uint64 ceiling so no sum of an epoch and a step can overflow it.
MAX_EPOCH = 2**62
assert MAX_EPOCH < MAX_COUNTER


def valid_epoch(epoch: int) -> bool:
    """An epoch in the valid range [0, MAX_EPOCH]."""
    return 0 <= epoch <= MAX_EPOCH


def next_epoch(highest_seen: int) -> int:
    """The epoch for a new claim; saturates rather than wrapping (never reached in practice)."""
    return min(highest_seen + 1, MAX_EPOCH)


def token(epoch: int, holder: str) -> FencingToken:
    """The total order on leaderships: epoch first, then the holder's name."""
    return (epoch, holder)
