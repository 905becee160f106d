"""Lease arithmetic: how long the holder and everyone else believe one renewal.

All durations run on the believer's own monotonic clock, whose rate is within
``1 +- d`` of real time (``d = max_drift``). For one renewal sent at real time
``t0`` and received at ``t1 >= t0``:

* the holder believes it leads until its clock has advanced ``L`` from the send,
  i.e. at the latest until real time ``t0 + L / (1 - d)``;
* a voter keeps its grant (and a follower its trust) until its clock has
  advanced ``L + S`` from receipt, i.e. at the earliest until ``t1 + (L + S) / (1 + d)``.

The holder stops strictly first whenever ``L / (1 - d) < (L + S) / (1 + d)``,
which is ``is_safe``. Nothing is assumed about message delay: a later receipt
only lengthens the others' belief.

Reporting who leads needs the opposite bound: a member must not name a leader
after its lease ended, however late a message arrives. A message that echoes a
stamp the receiver sent at ``stamp`` (own clock) and held it ``held`` seconds
(sender's clock) was sent no earlier than ``stamp + held * k`` on the receiver's
clock, with ``k = (1 - d) / (1 + d)`` the slowest one clock can run against
another; and ``remaining`` seconds of the sender's clock last at least
``remaining * k`` of the receiver's. ``view_expiry`` is therefore never later than
the lease's end, whatever the delay (``docs/election.md``).
"""

from __future__ import annotations


def holder_expiry(sent_at: float, lease_time: float) -> float:
    """When the holder stops believing a renewal it sent at ``sent_at`` (its clock)."""
    return sent_at + lease_time


def follower_expiry(received_at: float, lease_time: float, max_clock_skew: float) -> float:
    """When a voter or follower stops honouring a renewal received at ``received_at``."""
    return received_at + lease_time + max_clock_skew


def drift_factor(max_drift: float) -> float:
    """``k``: the fewest seconds of one clock that pass while another's advance one."""
    return (1.0 - max_drift) / (1.0 + max_drift)


def send_time_bound(stamp: float, held: float, max_drift: float) -> float:
    """The earliest the echoing message can have been sent, on the receiver's clock."""
    return stamp + held * drift_factor(max_drift)


def view_expiry(sent_no_earlier: float, remaining: float, max_drift: float) -> float:
    """When a receiver stops naming the leader whose lease had ``remaining`` seconds
    left (its clock) at a send no earlier than ``sent_no_earlier`` (receiver's clock)."""
    return sent_no_earlier + remaining * drift_factor(max_drift)


def is_safe(lease_time: float, max_clock_skew: float, max_drift: float) -> bool:
    """True when the holder's belief always ends strictly before anyone else's."""
    return lease_time * (1.0 + max_drift) < (lease_time + max_clock_skew) * (1.0 - max_drift)


def min_safe_skew(lease_time: float, max_drift: float) -> float:
    """The infimum skew margin for ``is_safe``: ``L * 2d / (1 - d)``."""
    return lease_time * 2.0 * max_drift / (1.0 - max_drift)


def failover_bound(
    lease_time: float, max_clock_skew: float, beat_interval: float, detection: float
) -> float:
    """Worst-case real time from a leader's death until a successor is agreed.

    The voters' grants run out within ``L + S`` (stretched by drift, which the
    two beats absorb); the successor's claim is retried every beat and its
    first renewal reaches the others one beat later; the membership layer must
    first have declared the dead leader failed (``detection``).
    """
    return lease_time + max_clock_skew + 2.0 * beat_interval + detection
