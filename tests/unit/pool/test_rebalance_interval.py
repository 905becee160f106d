"""The rebalance interval against Consul's refreshServerRebalanceTimer table
(agent/router/manager_internal_test.go, TestManagerInternal_refreshServerRebalanceTimer)."""

from __future__ import annotations

import random

import pytest

from controlplane.pool import (
    MIN_REUSE_SECONDS,
    REBALANCE_MAX_JITTER_SECONDS,
    InvalidCountError,
    InvalidTimeError,
    rebalance_interval,
    rebalance_interval_base,
    rebalance_jitter,
)

from .helpers import make_pool, make_server

MINUTE = 60.0
HOUR = 3600.0

# (num_nodes, num_servers, Consul's minimum, exact base = max(120, nodes / (64 * servers)))
CONSUL_TABLE = [
    (0, 3, 2 * MINUTE, 120.0),
    (1, 0, 2 * MINUTE, 120.0),  # partitioned
    (1, 3, 2 * MINUTE, 120.0),
    (2, 3, 2 * MINUTE, 120.0),
    (100, 0, 2 * MINUTE, 120.0),  # partitioned
    (100, 1, 2 * MINUTE, 120.0),  # partitioned
    (100, 3, 2 * MINUTE, 120.0),
    (1024, 1, 2 * MINUTE, 120.0),  # partitioned: 16 s scaled
    (1024, 3, 2 * MINUTE, 120.0),
    (1024, 5, 2 * MINUTE, 120.0),
    (16384, 1, 4 * MINUTE, 256.0),  # partitioned
    (16384, 2, 2 * MINUTE, 128.0),
    (16384, 3, 2 * MINUTE, 120.0),  # 85.3 s scaled
    (16384, 5, 2 * MINUTE, 120.0),
    (65535, 0, 2 * MINUTE, 120.0),
    (65535, 1, 8 * MINUTE, 1023.984375),
    (65535, 2, 3 * MINUTE, 511.9921875),
    (65535, 3, 5 * MINUTE, 341.328125),
    (65535, 5, 3 * MINUTE, 204.796875),
    (65535, 7, 2 * MINUTE, 65535 / 448),
    (100000, 1, 2 * MINUTE, 1562.5),
    (100000, 3, 2 * MINUTE, 100000 / 192),
    (100000, 5, 2 * MINUTE, 312.5),
    (100000, 7, 2 * MINUTE, 100000 / 448),
    (1000000, 1, 4 * HOUR, 15625.0),
    (1000000, 2, 2 * HOUR, 7812.5),
    (1000000, 3, 80 * MINUTE, 1000000 / 192),
    (1000000, 5, 50 * MINUTE, 3125.0),
    (1000000, 11, 20 * MINUTE, 1000000 / 704),
    (1000000, 19, 10 * MINUTE, 1000000 / 1216),
]


@pytest.mark.parametrize(("num_nodes", "num_servers", "consul_minimum", "base"), CONSUL_TABLE)
def test_base_interval_is_exact(
    num_nodes: int, num_servers: int, consul_minimum: float, base: float
) -> None:
    assert rebalance_interval_base(num_servers, num_nodes) == pytest.approx(base, rel=1e-12)
    assert rebalance_interval_base(num_servers, num_nodes) >= consul_minimum
    assert rebalance_interval(num_servers, num_nodes, 0.0) == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize(("num_nodes", "num_servers", "consul_minimum", "base"), CONSUL_TABLE)
def test_jittered_interval_stays_within_bounds(
    num_nodes: int, num_servers: int, consul_minimum: float, base: float
) -> None:
    rng = random.Random(num_nodes * 31 + num_servers)
    upper = max(base, MIN_REUSE_SECONDS + REBALANCE_MAX_JITTER_SECONDS)
    for _ in range(200):
        interval = rebalance_interval(num_servers, num_nodes, rng)
        assert interval >= consul_minimum
        assert base <= interval <= upper
        if base >= upper:
            # The rate-scaled term dominates: jitter only raises the floor.
            assert interval == base


def test_jitter_is_uniform_over_zero_to_sixty_seconds() -> None:
    rng = random.Random(5)
    draws = [rebalance_jitter(rng) for _ in range(2000)]
    assert all(0.0 <= draw < 60.0 for draw in draws)
    assert min(draws) < 3.0
    assert max(draws) > 57.0


def test_explicit_jitter_adds_to_the_floor() -> None:
    assert rebalance_interval(3, 100, 45.0) == 165.0
    assert rebalance_interval(3, 100, 60.0) == 180.0
    assert rebalance_interval(1, 1_000_000, 60.0) == 15625.0


def test_pool_interval_uses_heartbeat_cluster_size() -> None:
    pool = make_pool(seed=2)
    pool.refresh_server_lists([make_server(0)], num_nodes=1_000_000, leader_address="", now=0.0)
    assert pool.next_rebalance_interval() == 15625.0
    small = make_pool(seed=2)
    small.refresh_server_lists([make_server(0)], num_nodes=10, leader_address=None, now=0.0)
    assert 120.0 <= small.next_rebalance_interval() < 180.0


@pytest.mark.parametrize(("num_servers", "num_nodes"), [(-1, 0), (0, -1), (True, 3)])
def test_bad_counts_are_rejected(num_servers: int, num_nodes: int) -> None:
    with pytest.raises(InvalidCountError) as caught:
        rebalance_interval_base(num_servers, num_nodes)
    assert ">= 0" in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("jitter", [-0.1, 60.5, float("nan"), float("inf")])
def test_bad_jitter_is_rejected(jitter: float) -> None:
    with pytest.raises(InvalidTimeError, match=r"^jitter: .*\[0, 60\]"):
        rebalance_interval(3, 10, jitter)
