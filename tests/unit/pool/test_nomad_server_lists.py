"""Primaries from heartbeats, backups from configuration and API-version
filtering, after Nomad's client RPC proxy (client/rpcproxy/rpcproxy.go)."""

from __future__ import annotations

from controlplane.pool import ApiVersion, EjectionPolicy, Server

from .helpers import NO_EJECTION, make_pool, make_server, names


def backup(index: int, *, draining: bool = False) -> Server:
    return Server(name=f"b{index}", address=f"10.9.0.{index}:7946", draining=draining)


def test_refresh_replaces_primaries_and_reports_changes() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    a, b, c, d = (make_server(i) for i in range(4))
    pool.refresh_server_lists([a, b, c], num_nodes=10, leader_address="10.0.0.2:7946", now=1.0)
    assert set(names(pool.servers())) == {"s00", "s01", "s02"}

    result = pool.refresh_server_lists([b, c, d], num_nodes=12, leader_address=None, now=2.0)
    assert result.added == (d,)
    assert result.removed == (a,)
    assert result.incompatible == ()
    assert set(names(pool.servers())) == {"s01", "s02", "s03"}
    assert pool.servers()[-1] == d
    assert pool.num_nodes == 12
    assert pool.leader_address is None
    assert pool.last_refreshed_at == 2.0


def test_refresh_keeps_the_order_of_servers_that_stay() -> None:
    pool = make_pool(seed=5, ejection=NO_EJECTION)
    first = [make_server(i) for i in range(5)]
    pool.refresh_server_lists(first, num_nodes=5, leader_address="", now=0.0)
    pool.rebalance(lambda server: True, now=0.0)
    pool.notify_failed_server(pool.find_server(0.0) or first[0], now=0.0)
    order = pool.servers()

    newcomers = [make_server(i) for i in range(5, 9)]
    result = pool.refresh_server_lists(first + newcomers, num_nodes=9, leader_address="", now=1.0)
    assert pool.servers()[:5] == order
    assert set(pool.servers()[5:]) == set(newcomers)
    assert set(result.added) == set(newcomers)
    assert pool.find_server(1.0) == order[0]


def test_refresh_updates_details_of_known_servers() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    pool.refresh_server_lists([make_server(0), make_server(1)], 2, None, now=0.0)
    order = names(pool.servers())
    moved = Server(name="s01", address="10.7.7.7:7946", api_version=ApiVersion(1, 0))
    result = pool.refresh_server_lists([make_server(0), moved], 2, None, now=1.0)
    assert result.added == ()
    assert result.removed == ()
    assert names(pool.servers()) == order
    assert moved in pool.servers()
    assert make_server(1) not in pool.servers()


def test_refresh_with_duplicate_names_keeps_the_first() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    twin = Server(name="s00", address="10.5.5.5:7946")
    pool.refresh_server_lists([make_server(0), twin, make_server(1)], 3, None, now=0.0)
    assert pool.num_servers == 2
    assert make_server(0) in pool.servers()


def test_backups_serve_only_when_there_are_no_primaries() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    pool.set_backup_servers([backup(1), backup(2)])
    assert pool.find_server(0.0) == backup(1)
    assert not pool.is_offline

    pool.refresh_server_lists([make_server(0)], 1, None, now=0.0)
    assert pool.find_server(0.0) == make_server(0)
    # Rotating the only primary does not fall over to a backup: the primary is
    # still usable until it is ejected or removed.
    pool.notify_failed_server(make_server(0), now=0.0)
    assert pool.find_server(0.0) == make_server(0)

    # Heartbeats never clear the configured backups (a choice that differs from Nomad).
    assert pool.backup_servers() == (backup(1), backup(2))
    pool.refresh_server_lists([], 1, None, now=1.0)
    assert pool.primary_servers() == ()
    assert pool.find_server(1.0) == backup(1)


def test_backups_serve_when_every_primary_is_ejected() -> None:
    pool = make_pool(ejection=EjectionPolicy(max_ejection_percent=100))
    primaries = [make_server(0), make_server(1)]
    pool.refresh_server_lists(primaries, 3, None, now=0.0)
    pool.set_backup_servers([backup(1)])
    for server in primaries:
        for _ in range(5):
            pool.notify_failed_server(server, now=0.0)
    assert pool.ejected_servers(0.0) == tuple(primaries)
    assert pool.find_server(0.0) == backup(1)
    assert pool.candidates(0.0) == (backup(1),)
    # After the base ejection time the primaries are back in front.
    assert pool.find_server(30.0) in primaries


def test_backup_that_answers_a_rebalance_heads_until_a_primary_succeeds() -> None:
    pool = make_pool(seed=8, ejection=NO_EJECTION)
    primaries = [make_server(i) for i in range(3)]
    pool.refresh_server_lists(primaries, 3, None, now=0.0)
    pool.set_backup_servers([backup(1), backup(2)])

    result = pool.rebalance(lambda server: server.name.startswith("b"), now=0.0)
    assert result.head is not None
    assert result.head.name.startswith("b")
    # Every primary was pinged, first, and failed.
    assert set(result.failed) == set(primaries)
    assert pool.find_server(0.0) == result.head
    candidates = pool.candidates(0.0)
    assert set(candidates[:2]) == {backup(1), backup(2)}
    assert set(candidates[2:]) == set(primaries)

    # A call through a primary succeeds again: primaries lead once more.
    pool.notify_success(primaries[1], now=1.0)
    assert pool.find_server(1.0) in primaries


def test_new_primaries_from_a_heartbeat_get_tried_before_backups() -> None:
    pool = make_pool(seed=8, ejection=NO_EJECTION)
    pool.refresh_server_lists([make_server(0)], 3, None, now=0.0)
    pool.set_backup_servers([backup(1)])
    pool.rebalance(lambda server: server.name.startswith("b"), now=0.0)
    assert pool.find_server(0.0) == backup(1)
    pool.refresh_server_lists([make_server(0), make_server(5)], 3, None, now=1.0)
    assert pool.find_server(1.0) == make_server(0)


def test_version_filter_drops_other_majors_and_newer_minors() -> None:
    client = ApiVersion(2, 3)
    pool = make_pool(ejection=NO_EJECTION, client_api_version=client)
    older_major = Server("old-major", "10.0.1.1:7946", ApiVersion(1, 9))
    newer_major = Server("new-major", "10.0.1.2:7946", ApiVersion(3, 0))
    newer_minor = Server("new-minor", "10.0.1.3:7946", ApiVersion(2, 4))
    same = Server("same", "10.0.1.4:7946", ApiVersion(2, 3))
    older_minor = Server("old-minor", "10.0.1.5:7946", ApiVersion(2, 0))
    unknown = Server("unknown", "10.0.1.6:7946", None)

    result = pool.refresh_server_lists(
        [older_major, newer_major, newer_minor, same, older_minor, unknown], 6, None, now=0.0
    )
    assert result.incompatible == (older_major, newer_major, newer_minor)
    assert set(pool.servers()) == {same, older_minor, unknown}

    assert not pool.add_server(Server("late", "10.0.1.7:7946", ApiVersion(2, 9)))
    assert pool.add_server(Server("late-ok", "10.0.1.8:7946", ApiVersion(2, 1)))
    rejected = pool.set_backup_servers([Server("bk", "10.0.2.1:7946", ApiVersion(3, 1)), backup(1)])
    assert names(list(rejected)) == ["bk"]
    assert pool.backup_servers() == (backup(1),)


def test_a_server_upgraded_past_the_client_is_dropped_on_the_next_heartbeat() -> None:
    pool = make_pool(ejection=NO_EJECTION, client_api_version=ApiVersion(1, 0))
    pool.refresh_server_lists([make_server(0), make_server(1)], 2, None, now=0.0)
    upgraded = Server("s01", make_server(1).address, ApiVersion(1, 1))
    result = pool.refresh_server_lists([make_server(0), upgraded], 2, None, now=1.0)
    assert result.removed == (make_server(1),)
    assert result.incompatible == (upgraded,)
    assert pool.servers() == (make_server(0),)


def test_primary_that_is_also_a_backup_is_listed_once_as_primary() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    pool.refresh_server_lists([make_server(0)], 1, None, now=0.0)
    pool.set_backup_servers([make_server(0), backup(1)])
    assert pool.servers() == (make_server(0), backup(1))
    assert pool.num_servers == 2
    assert pool.remove_server("s00")
    assert pool.servers() == (backup(1),)
