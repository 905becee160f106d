"""Draining servers sink to the end; re-discovery from seeds when nothing is left."""

from __future__ import annotations

import pytest

from controlplane.pool import EjectionPolicy, Server

from .helpers import NO_EJECTION, make_pool, make_server, names

SEED = "servers.example.internal:7946"
OTHER_SEED = "backup-servers.example.internal:7946"


def test_draining_servers_sink_behind_every_other_server() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    a, c = make_server(0), make_server(2)
    b = make_server(1, draining=True)
    for server in (a, b, c):
        pool.add_server(server)
    assert pool.candidates(0.0) == (a, c, b)
    assert pool.find_server(0.0) == a
    pool.notify_failed_server(a, 0.0)
    assert pool.find_server(0.0) == c
    pool.notify_failed_server(c, 0.0)
    # Rotation cycles among the non-draining servers only.
    assert pool.find_server(0.0) == a


def test_a_server_announcing_draining_moves_to_the_end() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    servers = [make_server(i) for i in range(3)]
    for server in servers:
        pool.add_server(server)
    assert pool.set_draining(servers[0])
    head = pool.find_server(0.0)
    assert head == servers[1]
    assert names(list(pool.candidates(0.0))) == ["s01", "s02", "s00"]
    assert pool.servers()[0].draining
    # A heartbeat that no longer marks it draining brings it back in place.
    pool.refresh_server_lists(servers, 3, None, now=1.0)
    assert pool.find_server(1.0) == servers[0]
    assert not pool.set_draining("nobody")


def test_draining_servers_are_used_when_nothing_else_is_left() -> None:
    pool = make_pool(ejection=EjectionPolicy(max_ejection_percent=100))
    healthy = make_server(0)
    draining = make_server(1, draining=True)
    pool.add_server(healthy)
    pool.add_server(draining)
    for _ in range(5):
        pool.notify_failed_server(healthy, 0.0)
    assert pool.find_server(0.0) == draining
    pool.remove_server(draining)
    assert pool.find_server(0.0) is None


def test_a_healthy_backup_is_preferred_over_a_draining_primary() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    pool.add_server(make_server(0, draining=True))
    spare = Server("b1", "10.9.0.1:7946")
    pool.set_backup_servers([spare])
    assert pool.candidates(0.0) == (spare, make_server(0, draining=True))


def test_rebalance_pings_draining_servers_last() -> None:
    pool = make_pool(seed=4, ejection=NO_EJECTION)
    servers = [make_server(i, draining=i % 2 == 0) for i in range(6)]
    for server in servers:
        pool.add_server(server)
    result = pool.rebalance(lambda server: server.draining, now=0.0)
    assert [s.draining for s in result.pinged] == [False, False, False, True]
    assert result.head is not None
    assert result.head.draining
    assert pool.find_server(0.0) == result.head


def test_rediscovery_fills_an_empty_pool_from_seeds() -> None:
    pool = make_pool(seed_addresses=(SEED,))
    assert pool.needs_rediscovery(0.0)
    calls: list[str] = []

    def resolve(name: str) -> list[str]:
        calls.append(name)
        return ["10.1.0.1:7946", "10.1.0.2:7946"]

    result = pool.rediscover(resolve, now=0.0)
    assert calls == [SEED]
    assert result.resolved == ("10.1.0.1:7946", "10.1.0.2:7946")
    assert {s.address for s in result.added} == {"10.1.0.1:7946", "10.1.0.2:7946"}
    assert result.failures == ()
    assert not pool.needs_rediscovery(0.0)
    head = pool.find_server(0.0)
    assert head is not None
    assert head.address in {"10.1.0.1:7946", "10.1.0.2:7946"}
    assert head.name == head.address
    # Resolving again adds nothing already known.
    assert pool.rediscover(resolve, now=1.0).added == ()
    assert pool.num_servers == 2


def test_rediscovery_after_every_known_server_is_ejected_resolves_afresh() -> None:
    pool = make_pool(ejection=EjectionPolicy(max_ejection_percent=100), seed_addresses=(SEED,))
    servers = [make_server(i) for i in range(3)]
    pool.refresh_server_lists(servers, 3, None, now=0.0)
    answers = iter([["10.0.0.1:7946"], ["10.2.0.1:7946", "10.2.0.2:7946"], ["10.3.0.1:7946"]])
    calls: list[str] = []

    def resolve(name: str) -> list[str]:
        calls.append(name)
        return next(answers)

    for server in servers:
        for _ in range(5):
            pool.notify_failed_server(server, 10.0)
    assert pool.find_server(10.0) is None
    assert pool.needs_rediscovery(10.0)

    # First answer: only an address the pool already knows (and has ejected).
    first = pool.rediscover(resolve, now=10.0)
    assert first.added == ()
    assert pool.find_server(10.0) is None

    # DNS changed: the next re-discovery resolves again and finds new servers.
    second = pool.rediscover(resolve, now=11.0)
    assert {s.address for s in second.added} == {"10.2.0.1:7946", "10.2.0.2:7946"}
    head = pool.find_server(11.0)
    assert head is not None
    assert head.address.startswith("10.2.0.")
    assert calls == [SEED, SEED]

    # The next heartbeat replaces the discovered records with real ones.
    pool.refresh_server_lists(servers, 3, None, now=60.0)
    assert set(pool.servers()) == set(servers)


def test_rediscovery_reports_seeds_that_fail_and_keeps_going() -> None:
    pool = make_pool(seed_addresses=(SEED, OTHER_SEED))

    def resolve(name: str) -> list[str]:
        if name == SEED:
            raise OSError("Name or service not known")
        return ["10.4.0.1:7946", "not-an-address", "10.4.0.1:7946"]

    result = pool.rediscover(resolve, now=0.0)
    assert [f.seed for f in result.failures] == [SEED, OTHER_SEED]
    assert "Name or service not known" in result.failures[0].reason
    assert "address" in result.failures[1].reason
    assert names(list(result.added)) == ["10.4.0.1:7946"]
    assert pool.num_servers == 1


def test_rediscovery_without_seeds_does_nothing() -> None:
    pool = make_pool()
    result = pool.rediscover(lambda name: pytest.fail("no seeds to resolve"), now=0.0)
    assert result.added == ()
    assert pool.find_server(0.0) is None


def test_offline_pool_needs_rediscovery() -> None:
    pool = make_pool(ejection=NO_EJECTION, seed_addresses=(SEED,))
    pool.add_server(make_server(0))
    assert not pool.needs_rediscovery(0.0)
    pool.rebalance(lambda server: False, now=0.0)
    assert pool.needs_rediscovery(0.0)
    pool.rediscover(lambda name: ["10.5.0.1:7946"], now=0.0)
    assert not pool.is_offline
