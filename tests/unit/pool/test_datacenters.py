"""Datacenter-aware pools: Nomad's rule puts the servers a heartbeat lists in another
datacenter among the backups, so neither a shuffle nor a failure of one local server
sends a caller across datacenters while a local server answers."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from controlplane.pool import PoolConfig, PoolInputError, Server, ServerPool

from .helpers import make_server


def dc(index: int, datacenter: str) -> Server:
    return replace(make_server(index), datacenter=datacenter)


def pool_in(datacenter: str, seed: int = 1) -> ServerPool:
    return ServerPool(PoolConfig(datacenter=datacenter), rng=random.Random(seed))


def names(servers: tuple[Server, ...]) -> list[str]:
    return [s.name for s in servers]


def test_other_datacenter_servers_become_backups_and_come_last() -> None:
    pool = pool_in("dc1")
    listed = [dc(1, "dc1"), dc(2, "dc2"), dc(3, ""), dc(4, "dc2")]
    pool.refresh_server_lists(listed, 4, None, 0.0)
    assert sorted(names(pool.primary_servers())) == ["s01", "s03"]
    assert names(pool.backup_servers()) == ["s02", "s04"]
    assert names(pool.candidates(0.0))[2:] == ["s02", "s04"]
    # Both local servers fail: only then does the pool offer another datacenter.
    for _ in range(2):
        head = pool.find_server(0.0)
        assert head is not None
        assert head.datacenter in ("dc1", "")
        pool.notify_failed_server(head, 0.0)
    assert pool.find_server(0.0, datacenter="dc2") == dc(2, "dc2")
    assert pool.find_server(0.0, datacenter="dc9") is None


def test_remote_backups_follow_the_heartbeat_and_configured_backups_stay() -> None:
    pool = pool_in("dc1")
    configured = dc(9, "dc3")
    pool.set_backup_servers([configured])
    pool.refresh_server_lists([dc(1, "dc1"), dc(2, "dc2")], 2, None, 0.0)
    assert names(pool.backup_servers()) == ["s09", "s02"]
    moved = replace(dc(2, "dc2"), address="10.9.9.9:7946")
    pool.refresh_server_lists([dc(1, "dc1"), moved, dc(3, "dc2")], 3, None, 1.0)
    assert pool.backup_servers() == (configured, moved, dc(3, "dc2"))
    # Gone from the heartbeat: gone from the backups; the configured one stays.
    pool.refresh_server_lists([dc(1, "dc1")], 1, None, 2.0)
    assert pool.backup_servers() == (configured,)
    # A server that moves into our datacenter becomes a primary.
    pool.refresh_server_lists([dc(1, "dc1"), dc(3, "dc1")], 2, None, 3.0)
    assert sorted(names(pool.primary_servers())) == ["s01", "s03"]
    assert pool.backup_servers() == (configured,)


def test_without_a_datacenter_every_server_is_a_primary() -> None:
    pool = ServerPool(PoolConfig(), rng=random.Random(1))
    pool.refresh_server_lists([dc(1, "dc1"), dc(2, "dc2")], 2, None, 0.0)
    assert sorted(names(pool.primary_servers())) == ["s01", "s02"]
    assert pool.backup_servers() == ()


def test_the_datacenter_must_be_a_string() -> None:
    with pytest.raises(PoolInputError, match="datacenter"):
        PoolConfig(datacenter=1)  # type: ignore[arg-type]
