"""Outlier ejection with Envoy's defaults: 5 consecutive failures, 30 s times the
ejection count (capped at 300 s), at most 10 % of servers (at least one)."""

from __future__ import annotations

import pytest

from controlplane.pool import EjectionPolicy, FailureVerdict, Server, ServerPool

from .helpers import make_pool, make_server


def fill(pool: ServerPool, count: int) -> list[Server]:
    servers = [make_server(i) for i in range(count)]
    for server in servers:
        pool.add_server(server)
    return servers


def fail(pool: ServerPool, server: Server, now: float, times: int) -> list[FailureVerdict]:
    return [pool.notify_failed_server(server, now) for _ in range(times)]


def test_five_consecutive_failures_eject_for_thirty_seconds() -> None:
    pool = make_pool()
    servers = fill(pool, 10)
    head = servers[0]
    verdicts = fail(pool, head, now=100.0, times=5)
    assert verdicts == [FailureVerdict.ROTATED] + [FailureVerdict.COUNTED] * 3 + [
        FailureVerdict.EJECTED
    ]
    assert pool.is_ejected(head, 100.0)
    assert head not in pool.candidates(100.0)
    assert head in pool.servers()
    for now in (100.0, 115.0, 129.999):
        for _ in range(20):
            current = pool.find_server(now)
            assert current is not None
            assert current != head
            pool.notify_success(current, now)
            pool.notify_failed_server(current, now)
            pool.notify_success(current, now)
    # Back automatically once the ejection time has passed, with a clean count.
    assert not pool.is_ejected(head, 130.0)
    assert head in pool.candidates(130.0)
    assert pool.consecutive_failures(head) == 0
    # Failures reported while ejected are ignored.
    again = make_pool()
    fill(again, 10)
    fail(again, servers[0], now=0.0, times=5)
    assert again.notify_failed_server(servers[0], 1.0) is FailureVerdict.IGNORED


def test_four_failures_then_a_success_do_not_eject() -> None:
    pool = make_pool()
    servers = fill(pool, 10)
    fail(pool, servers[3], 0.0, 4)
    pool.notify_success(servers[3], 0.0)
    assert pool.consecutive_failures(servers[3]) == 0
    fail(pool, servers[3], 0.0, 4)
    assert not pool.is_ejected(servers[3], 0.0)
    assert pool.notify_failed_server(servers[3], 0.0) is FailureVerdict.EJECTED


def test_repeat_ejections_last_longer_up_to_the_cap() -> None:
    pool = make_pool()
    servers = fill(pool, 10)
    target = servers[2]
    now = 0.0
    expected = [30.0, 60.0, 90.0, 120.0, 150.0, 180.0, 210.0, 240.0, 270.0, 300.0, 300.0]
    for duration in expected:
        fail(pool, target, now, 5)
        assert pool.is_ejected(target, now + duration - 0.001)
        assert not pool.is_ejected(target, now + duration)
        now += duration  # fails again the moment it returns


def test_multiplier_decays_while_the_server_stays_healthy() -> None:
    pool = make_pool()
    servers = fill(pool, 10)
    target = servers[4]
    fail(pool, target, 0.0, 5)  # ejected 0..30, multiplier 1
    fail(pool, target, 30.0, 5)  # ejected 30..90, multiplier 2
    # In service from 90 s; 15 s later one decay step (10 s) has passed.
    fail(pool, target, 105.0, 5)  # multiplier 2 - 1 + 1 = 2 -> 60 s
    assert pool.is_ejected(target, 164.9)
    assert not pool.is_ejected(target, 165.0)
    # A long healthy spell brings it back to the base time.
    fail(pool, target, 1000.0, 5)
    assert not pool.is_ejected(target, 1030.0)


def test_at_most_ten_percent_of_servers_are_ejected() -> None:
    pool = make_pool()
    servers = fill(pool, 20)
    assert fail(pool, servers[0], 0.0, 5)[-1] is FailureVerdict.EJECTED
    assert fail(pool, servers[1], 0.0, 5)[-1] is FailureVerdict.EJECTED
    # A third would make 15 % > 10 %: refused, but the failures stay counted.
    assert fail(pool, servers[2], 0.0, 5)[-1] is not FailureVerdict.EJECTED
    assert not pool.is_ejected(servers[2], 0.0)
    assert pool.consecutive_failures(servers[2]) == 5
    # Once an ejection ends, the next failure of the waiting server ejects it.
    assert pool.notify_failed_server(servers[2], 30.0) is FailureVerdict.EJECTED
    assert len(pool.ejected_servers(30.0)) == 1


@pytest.mark.parametrize("pool_size", [1, 2, 3, 5, 9])
def test_small_pools_can_still_eject_one_server(pool_size: int) -> None:
    pool = make_pool()
    servers = fill(pool, pool_size)
    assert fail(pool, servers[0], 0.0, 5)[-1] is FailureVerdict.EJECTED
    if pool_size > 1:
        assert fail(pool, servers[1], 0.0, 5)[-1] is not FailureVerdict.EJECTED
    assert len(pool.ejected_servers(0.0)) == 1


def test_strict_percentage_without_the_one_server_floor() -> None:
    pool = make_pool(ejection=EjectionPolicy(always_eject_one=False))
    servers = fill(pool, 5)
    assert fail(pool, servers[0], 0.0, 5)[-1] is not FailureVerdict.EJECTED
    big = make_pool(ejection=EjectionPolicy(always_eject_one=False))
    many = fill(big, 10)
    assert fail(big, many[0], 0.0, 5)[-1] is FailureVerdict.EJECTED
    assert fail(big, many[1], 0.0, 5)[-1] is not FailureVerdict.EJECTED


def test_ejection_can_be_disabled() -> None:
    pool = make_pool(ejection=EjectionPolicy(consecutive_failures=None))
    servers = fill(pool, 3)
    verdicts = fail(pool, servers[1], 0.0, 50)
    assert FailureVerdict.EJECTED not in verdicts
    assert pool.ejected_servers(0.0) == ()


def test_rebalance_skips_ejected_servers_and_success_resets_counts() -> None:
    pool = make_pool(ejection=EjectionPolicy(max_ejection_percent=50))
    servers = fill(pool, 4)
    fail(pool, servers[0], 0.0, 5)
    fail(pool, servers[1], 0.0, 3)
    pinged: list[Server] = []

    def ping(server: Server) -> bool:
        pinged.append(server)
        return server == servers[1]

    result = pool.rebalance(ping, 1.0)
    assert servers[0] not in pinged
    assert result.head == servers[1]
    assert pool.consecutive_failures(servers[1]) == 0
