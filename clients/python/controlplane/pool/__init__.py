"""Client-side server pool: pure bookkeeping of which server a client talks to.

The package owns the server list of one client, with Consul's and Nomad's
semantics (rotate on failure, periodic shuffle-and-ping rebalance, primaries from
heartbeats and configured backups, API-version filtering) plus Envoy-style
outlier ejection, draining servers and re-discovery from seeds. It performs no
I/O and reads no clock: time arrives as ``now`` arguments, randomness from an
injected ``random.Random``; pings and name resolution are done by the caller,
whose results the pool takes as data (``plan_rebalance``/``apply_pings``,
``seeds_to_resolve``/``apply_resolution``), or through callables handed to the
``rebalance`` and ``rediscover`` conveniences. See ``docs/server-pool.md``.
"""

from __future__ import annotations

from controlplane.pool.errors import (
    InvalidAddressError,
    InvalidApiVersionError,
    InvalidConfigError,
    InvalidCountError,
    InvalidServerError,
    InvalidTimeError,
    PoolInputError,
)
from controlplane.pool.interval import (
    MIN_REUSE_SECONDS,
    REBALANCE_CONNS_PER_SEC_PER_SERVER,
    REBALANCE_JITTER_FRACTION,
    REBALANCE_MAX_JITTER_SECONDS,
    rebalance_interval,
    rebalance_interval_base,
    rebalance_jitter,
)
from controlplane.pool.outlier import EjectionPolicy
from controlplane.pool.pool import (
    Distances,
    FailureVerdict,
    Pinger,
    PingResults,
    PoolConfig,
    RebalancePlan,
    RebalanceResult,
    RediscoveryResult,
    RefreshResult,
    Resolution,
    Resolver,
    SeedFailure,
    ServerPool,
    nearest_first,
)
from controlplane.pool.server import ApiVersion, Server, is_api_compatible, parse_address

__all__ = [
    "MIN_REUSE_SECONDS",
    "REBALANCE_CONNS_PER_SEC_PER_SERVER",
    "REBALANCE_JITTER_FRACTION",
    "REBALANCE_MAX_JITTER_SECONDS",
    "ApiVersion",
    "Distances",
    "EjectionPolicy",
    "FailureVerdict",
    "InvalidAddressError",
    "InvalidApiVersionError",
    "InvalidConfigError",
    "InvalidCountError",
    "InvalidServerError",
    "InvalidTimeError",
    "PingResults",
    "Pinger",
    "PoolConfig",
    "PoolInputError",
    "RebalancePlan",
    "RebalanceResult",
    "RediscoveryResult",
    "RefreshResult",
    "Resolution",
    "Resolver",
    "SeedFailure",
    "Server",
    "ServerPool",
    "is_api_compatible",
    "nearest_first",
    "parse_address",
    "rebalance_interval",
    "rebalance_interval_base",
    "rebalance_jitter",
]
