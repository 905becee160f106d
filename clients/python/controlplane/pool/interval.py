"""How long a client keeps its server order before the next rebalance.

This module owns the rebalance interval: a deterministic base
(:func:`rebalance_interval_base`), a jitter step (:func:`rebalance_jitter`) and
their combination (:func:`rebalance_interval`). The numbers and the formula are
Consul's (``agent/router/manager.go``, ``refreshServerRebalanceTimer``), which
Nomad's client RPC proxy copies unchanged:

    interval = max(MIN_REUSE + stagger, num_nodes / (num_servers * CONNS_PER_SEC))

where ``stagger`` is uniform in ``[0, MIN_REUSE / JITTER_FRACTION)``. The
jitter raises the *floor*; in a cluster large enough that the rate-scaled term
dominates, the interval is that term exactly, as in Consul.
"""

from __future__ import annotations

import math
import random

from controlplane.pool.errors import InvalidCountError, InvalidTimeError

__all__ = [
    "MIN_REUSE_SECONDS",
    "REBALANCE_CONNS_PER_SEC_PER_SERVER",
    "REBALANCE_JITTER_FRACTION",
    "REBALANCE_MAX_JITTER_SECONDS",
    "rebalance_interval",
    "rebalance_interval_base",
    "rebalance_jitter",
]

# Consul clientRPCMinReuseDuration = 120 * time.Second: never rebalance one
# client's connection more often than this.
MIN_REUSE_SECONDS = 120.0

# Consul clientRPCJitterFraction = 2: the floor is staggered by up to
# MIN_REUSE / 2 = 60 s so clients started together do not rebalance together.
REBALANCE_JITTER_FRACTION = 2
REBALANCE_MAX_JITTER_SECONDS = MIN_REUSE_SECONDS / REBALANCE_JITTER_FRACTION

# Consul newRebalanceConnsPerSecPerServer = 64: the cluster-wide rebalancing
# load is capped at 64 new connections per second per server
# (clusterWideRebalanceConnsPerSec = numServers * 64).
REBALANCE_CONNS_PER_SEC_PER_SERVER = 64

# Consul lib.RateScaledInterval returns the minimum for any rate at or below
# once a day (minRate = 1 / 86400), which covers a pool with zero servers.
_MIN_RATE_PER_SECOND = 1.0 / 86400


def _check_count(field: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidCountError(field, f"must be an integer >= 0, got {value!r}")


def rebalance_interval_base(num_servers: int, num_nodes: int) -> float:
    """The rebalance interval in seconds without jitter.

    ``max(120, num_nodes / (64 * num_servers))``; 120 s when there are no
    servers (Consul's RateScaledInterval falls back to the minimum when the
    cluster-wide rate is zero).

    Raises:
        InvalidCountError: either count is negative or not an integer.
    """
    _check_count("num_servers", num_servers)
    _check_count("num_nodes", num_nodes)
    cluster_wide_conns_per_sec = float(num_servers * REBALANCE_CONNS_PER_SEC_PER_SERVER)
    if cluster_wide_conns_per_sec <= _MIN_RATE_PER_SECOND:
        return MIN_REUSE_SECONDS
    return max(MIN_REUSE_SECONDS, num_nodes / cluster_wide_conns_per_sec)


def rebalance_jitter(rng: random.Random) -> float:
    """A stagger uniform in ``[0, 60)`` seconds (Consul lib.RandomStagger(120 s / 2))."""
    return rng.random() * REBALANCE_MAX_JITTER_SECONDS


def rebalance_interval(num_servers: int, num_nodes: int, jitter: random.Random | float) -> float:
    """The rebalance interval in seconds, with jitter.

    Args:
        num_servers: servers in the client's pool.
        num_nodes: nodes in the cluster (from the last heartbeat response).
        jitter: a ``random.Random`` to draw the stagger from, or the stagger
            itself in seconds, within ``[0, 60]``, for reproducible callers.

    Returns:
        ``max(120 + stagger, num_nodes / (64 * num_servers))``.

    Raises:
        InvalidCountError: a count is negative.
        InvalidTimeError: an explicit stagger is outside ``[0, 60]`` or not finite.
    """
    base = rebalance_interval_base(num_servers, num_nodes)
    if isinstance(jitter, random.Random):
        stagger = rebalance_jitter(jitter)
    else:
        stagger = float(jitter)
        if not math.isfinite(stagger) or not 0.0 <= stagger <= REBALANCE_MAX_JITTER_SECONDS:
            raise InvalidTimeError(
                "jitter",
                f"must be a number of seconds in [0, {REBALANCE_MAX_JITTER_SECONDS:g}], "
                f"got {jitter!r}",
            )
    return max(MIN_REUSE_SECONDS + stagger, base)
