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
