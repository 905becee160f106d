"""Ports of Consul's client server-manager tests (agent/router/manager_test.go).

Consul has no outlier ejection, so these pools disable it: the tests exercise
rotation and rebalancing alone, as Consul's do.
"""

from __future__ import annotations

import random

import pytest

from controlplane.pool import FailureVerdict, Server

from .helpers import NO_EJECTION, make_pool, make_server, names


def random_pinger(fail_fraction: float, seed: int):
    """Consul's fauxConnPool: each ping fails with probability ``fail_fraction``."""
    rng = random.Random(seed)
    answers: list[tuple[Server, bool]] = []

    def ping(server: Server) -> bool:
        ok = rng.random() > fail_fraction
        answers.append((server, ok))
        return ok

    return ping, answers


def test_add_server_counts_each_name_once() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    assert pool.num_servers == 0
    s1 = make_server(1)
    assert pool.add_server(s1)
    assert pool.num_servers == 1
    assert pool.add_server(s1)
    assert pool.num_servers == 1
    pool.add_server(make_server(2))
    assert pool.num_servers == 2


def test_add_server_with_known_name_updates_details_in_place() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    pool.add_server(make_server(1))
    pool.add_server(make_server(2))
    moved = Server(name="s01", address="10.9.9.9:7946")
    pool.add_server(moved)
    assert pool.servers() == (moved, make_server(2))


def test_is_offline_follows_adds_and_rebalances() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    assert pool.is_offline
    s1 = make_server(1)
    pool.add_server(s1)
    assert not pool.is_offline
    pool.rebalance(lambda server: True, now=0.0)
    assert not pool.is_offline
    pool.remove_server(s1)
    result = pool.rebalance(lambda server: True, now=0.0)
    assert pool.is_offline
    assert result.offline
    assert result.pinged == ()

    flaky = make_pool(ejection=NO_EJECTION)
    flaky.add_server(s1)
    ping, _ = random_pinger(0.5, seed=7)
    online = offline = 0
    for _ in range(100):
        flaky.rebalance(ping, now=0.0)
        if flaky.is_offline:
            offline += 1
        else:
            online += 1
    assert online > 0
    assert offline > 0


def test_find_server_returns_head_and_follows_rotation() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    assert pool.find_server(0.0) is None
    pool.add_server(Server(name="s1", address="10.0.0.1:7946"))
    assert pool.num_servers == 1
    s1 = pool.find_server(0.0)
    assert s1 is not None
    assert s1.name == "s1"
    assert pool.find_server(0.0) == s1
    pool.add_server(Server(name="s2", address="10.0.0.2:7946"))
    assert pool.find_server(0.0) == s1

    assert pool.notify_failed_server(s1, now=0.0) is FailureVerdict.ROTATED
    s2 = pool.find_server(0.0)
    assert s2 is not None
    assert s2.name == "s2"
    pool.notify_failed_server(s2, now=0.0)
    assert pool.find_server(0.0) == s1


def test_notify_failed_server_only_rotates_the_current_head() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    s1 = Server(name="s1", address="10.0.0.1:7946")
    s2 = Server(name="s2", address="10.0.0.2:7946")

    # A server the pool does not manage.
    assert pool.notify_failed_server(s1, now=0.0) is FailureVerdict.IGNORED
    assert pool.num_servers == 0
    pool.add_server(s1)
    assert pool.notify_failed_server(s2, now=0.0) is FailureVerdict.IGNORED
    assert pool.num_servers == 1
    pool.add_server(s2)
    assert pool.num_servers == 2
    assert pool.find_server(0.0) == s1

    # s2 is not the head: nothing moves.
    assert pool.notify_failed_server(s2, now=0.0) is FailureVerdict.COUNTED
    assert pool.find_server(0.0) == s1
    assert pool.servers() == (s1, s2)

    pool.notify_failed_server(s1, now=0.0)
    assert pool.find_server(0.0) == s2
    pool.notify_failed_server(s2, now=0.0)
    assert pool.find_server(0.0) == s1


def test_notify_failed_server_of_non_head_leaves_order_unchanged() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    for index in range(10):
        pool.add_server(make_server(index))
    before = pool.servers()
    for server in before[1:]:
        assert pool.notify_failed_server(server, now=0.0) is FailureVerdict.COUNTED
    assert pool.servers() == before


def test_single_server_is_not_rotated() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    only = make_server(1)
    pool.add_server(only)
    assert pool.notify_failed_server(only, now=0.0) is FailureVerdict.COUNTED
    assert pool.find_server(0.0) == only


def test_num_servers() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    assert pool.num_servers == 0
    pool.add_server(make_server(0))
    assert pool.num_servers == 1


def test_rebalance_of_100_servers_with_half_the_pings_failing() -> None:
    """Consul TestServers_RebalanceServers: 100 servers, 50 % of pings fail,
    100 rebalances give at least 50 distinct orders, each with a live head."""
    pool = make_pool(seed=42, ejection=NO_EJECTION)
    max_servers = 100
    for index in range(max_servers):
        pool.add_server(make_server(index))
    ping, answers = random_pinger(0.5, seed=4242)

    orders: set[tuple[str, ...]] = set()
    for _ in range(100):
        answers.clear()
        result = pool.rebalance(ping, now=0.0)
        # With 100 servers at 50 % failure, some server answers (p = 1 - 2**-100).
        assert result.succeeded
        last_server, last_ok = answers[-1]
        assert last_ok
        assert result.head == last_server == pool.find_server(0.0)
        assert all(not ok for _, ok in answers[:-1])
        assert result.failed == tuple(server for server, _ in answers[:-1])

        walked = []
        for _ in range(max_servers):
            server = pool.find_server(0.0)
            assert server is not None
            pool.notify_failed_server(server, now=0.0)
            walked.append(server.name)
        assert len(set(walked)) == max_servers
        orders.add(tuple(walked))

    assert len(orders) >= max_servers * 0.5


def test_rebalance_puts_dead_servers_behind_the_live_head() -> None:
    pool = make_pool(seed=3, ejection=NO_EJECTION)
    servers = [make_server(index) for index in range(100)]
    for server in servers:
        pool.add_server(server)
    dead = {server.name for server in random.Random(9).sample(servers, 50)}

    for _ in range(100):
        result = pool.rebalance(lambda server: server.name not in dead, now=0.0)
        head = pool.find_server(0.0)
        assert head is not None
        assert head == result.head
        assert head.name not in dead
        # The servers that failed this round were cycled to the end, in ping order.
        tail = pool.servers()[len(servers) - len(result.failed) :]
        assert tail == result.failed


def test_rebalance_never_leaves_the_failed_server_first() -> None:
    """Consul TestServers_RebalanceServers_AvoidFailed: shuffling alone would put
    the failed server first a third of the time."""
    trio = [Server(name=f"s{i}", address=f"10.0.0.{i}:7946") for i in (1, 2, 3)]
    for trial in range(100):
        pool = make_pool(seed=trial, ejection=NO_EJECTION)
        for server in trio:
            pool.add_server(server)
        pool.rebalance(lambda server: server.name != "s2", now=0.0)
        head = pool.find_server(0.0)
        assert head is not None
        assert head.name != "s2"


def test_rebalance_with_no_answer_keeps_the_old_order() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    for index in range(5):
        pool.add_server(make_server(index))
    before = pool.servers()
    result = pool.rebalance(lambda server: False, now=0.0)
    assert not result.succeeded
    assert result.offline
    assert pool.is_offline
    assert len(result.pinged) == 5
    assert pool.servers() == before


def test_rebalance_with_a_raising_pinger_leaves_the_pool_unchanged() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    for index in range(5):
        pool.add_server(make_server(index))
    before = pool.servers()

    def broken(server: Server) -> bool:
        raise ConnectionError("boom")

    with pytest.raises(ConnectionError):
        pool.rebalance(broken, now=0.0)
    assert pool.servers() == before


def test_remove_server_from_front_end_and_middle() -> None:
    """Consul TestManager_RemoveServer."""
    pool = make_pool(seed=11, ejection=NO_EJECTION)
    s1, s2 = make_server(1), make_server(2)
    assert not pool.remove_server(s1)
    pool.add_server(s1)
    assert not pool.remove_server(s2)
    pool.add_server(s2)
    max_servers = 19
    for index in range(max_servers, 2, -1):
        pool.add_server(make_server(index))
    assert pool.num_servers == max_servers
    pool.rebalance(lambda server: True, now=0.0)
    assert pool.num_servers == max_servers

    removed: list[Server] = []
    expected = max_servers

    def gone(server: Server) -> None:
        assert server not in pool.servers()
        assert server not in pool.candidates(0.0)

    for _ in range(3):  # from the front
        server = pool.find_server(0.0)
        assert server is not None
        assert pool.remove_server(server)
        expected -= 1
        assert pool.num_servers == expected
        gone(server)
        removed.append(server)

    for _ in range(3):  # from the end
        server = pool.find_server(0.0)
        assert server is not None
        pool.notify_failed_server(server, now=0.0)
        pool.remove_server(server)
        expected -= 1
        assert pool.num_servers == expected
        gone(server)
        removed.append(server)

    for _ in range(3):  # from the middle
        server = pool.find_server(0.0)
        assert server is not None
        pool.notify_failed_server(server, now=0.0)
        second = pool.find_server(0.0)
        assert second is not None
        pool.notify_failed_server(second, now=0.0)
        pool.remove_server(server)
        expected -= 1
        assert pool.num_servers == expected
        gone(server)
        removed.append(server)

    assert pool.num_servers + len(removed) == max_servers
    while pool.num_servers:
        server = pool.find_server(0.0)
        assert server is not None
        pool.remove_server(server.name)
        removed.append(server)
    assert len(set(names(removed))) == max_servers
    assert pool.find_server(0.0) is None
