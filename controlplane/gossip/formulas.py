"""Pure timing and fan-out formulas of SWIM/Lifeguard, as memberlist computes them.

Durations are seconds as floats. Each function matches memberlist's (util.go,
suspicion.go) including its millisecond rounding, so its test tables carry over.
"""

from __future__ import annotations

import math

# memberlist util.go: pushPullScaleThreshold = 32 nodes
PUSH_PULL_SCALE_THRESHOLD = 32


def suspicion_timeout(suspicion_mult: int, n: int, interval: float) -> float:
    """Minimum suspicion timeout: ``mult * max(1, log10(max(1, n))) * interval``.

    memberlist keeps three decimals of the node scale (integer durations); so do we.
    """
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return suspicion_mult * math.floor(node_scale * 1000) * interval / 1000


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """How many times a broadcast is sent: ``mult * ceil(log10(n + 1))``."""
    return retransmit_mult * math.ceil(math.log10(n + 1))


def push_pull_scale(interval: float, n: int) -> float:
    """Push-pull interval, lengthened above 32 nodes so anti-entropy does not saturate."""
    if n <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    multiplier = math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1.0
    return multiplier * interval


def remaining_suspicion_time(
    confirmations: int, expected: int, elapsed: float, minimum: float, maximum: float
) -> float:
    """Time left on a suspicion timer after ``confirmations`` of ``expected`` arrived.

    The timeout starts at ``maximum`` and falls logarithmically toward ``minimum``
    as independent confirmations arrive (Lifeguard); ``elapsed`` is already spent.
    The result may be negative: the timer is overdue.
    """
    frac = math.log(confirmations + 1.0) / math.log(expected + 1.0)
    raw = maximum - frac * (maximum - minimum)
    timeout = math.floor(1000.0 * raw) / 1000.0
    timeout = max(timeout, minimum)
    return timeout - elapsed


def suspicion_bounds(
    suspicion_mult: int, max_timeout_mult: int, n: int, probe_interval: float
) -> tuple[float, float]:
    """(minimum, maximum) suspicion timeout for a cluster of ``n`` members."""
    minimum = suspicion_timeout(suspicion_mult, n, probe_interval)
    return minimum, max_timeout_mult * minimum


def expected_confirmations(suspicion_mult: int, n: int) -> int:
    """Confirmations that shrink a suspicion to its minimum (memberlist suspectNode).

    ``mult - 2`` so the nominal timeout is hit two probe intervals early; zero when
    the cluster is too small to supply them (``n - 2`` excludes us and the suspect).
    """
    k = suspicion_mult - 2
    if n - 2 < k:
        return 0
    return k


def adaptive_probe_timeout(
    srtt: float | None, rttvar: float, floor: float, ceiling: float, health_score: int
) -> float:
    """How long a probe waits for an ack before trying indirect probes.

    ``srtt + 4 * rttvar`` (TCP's retransmission timeout, RFC 6298: about the 99th
    percentile of the measured round trips, which memberlist asks ProbeTimeout to be),
    kept within ``[floor, ceiling]`` and multiplied by ``health_score + 1`` as
    Lifeguard scales the probe interval: a member that misses acks waits longer.
    Without a measurement yet, ``ceiling`` (memberlist's fixed ProbeTimeout).
    """
    base = ceiling if srtt is None else min(ceiling, max(floor, srtt + 4.0 * rttvar))
    return base * (health_score + 1)


def probe_suspect_after(probe_timeout: float, probe_interval: float) -> float:
    """When a probe with no ack turns into a suspicion, counted from the ping.

    memberlist waits out the whole (health-scaled) probe interval. An indirect probe
    needs the direct timeout, then the relay's own timeout (about the same) and two
    more hops: three timeouts, never more than the interval.
    """
    return min(3.0 * probe_timeout, probe_interval)


def suspicion_probe_chance(expected: int, n: int) -> float:
    """Chance that a member that learns of a suspicion probes the suspect at once.

    About ``3 * expected`` of the ``n - 2`` members that may confirm (all but the
    suspect and the accuser) probe, whatever the cluster size: enough that the
    ``expected`` confirmations arrive within one probe interval even if some of them
    are lost or slow, few enough that a large cluster does not flood the suspect.
    None are needed when none are expected.
    """
    if expected <= 0:
        return 0.0
    return min(1.0, 3.0 * expected / max(1, n - 2))
