"""Nearest-first ordering (Consul's ?near=): servers sorted by estimated round trip,
unknown distances last, and the rebalance shuffle kept inside groups of equal
distance."""

from __future__ import annotations

import pytest

from controlplane.pool import PoolInputError, nearest_first

from .helpers import make_pool, make_server, names

SERVERS = [make_server(i) for i in range(1, 7)]


@pytest.mark.parametrize(
    ("distances", "expected"),
    [
        ({}, ["s01", "s02", "s03", "s04", "s05", "s06"]),
        ({"s04": 0.001, "s02": 0.030}, ["s04", "s02", "s01", "s03", "s05", "s06"]),
        (
            {"s06": 0.002, "s05": 0.001, "s01": 0.002, "s03": 0.001},
            ["s03", "s05", "s01", "s06", "s02", "s04"],
        ),
    ],
)
def test_nearest_first_is_stable_with_unknown_last(
    distances: dict[str, float], expected: list[str]
) -> None:
    assert names(nearest_first(SERVERS, distances)) == expected


def test_rebalance_shuffles_only_within_equal_distances() -> None:
    near = {"s01": 0.001, "s02": 0.001, "s03": 0.001}
    far = {"s04": 0.040, "s05": 0.040}
    orders = set()
    for seed in range(20):
        pool = make_pool(seed=seed)
        pool.refresh_server_lists(SERVERS, 6, None, 0.0)
        pool.set_distances({**near, **far})
        pool.rebalance(lambda server: True, 0.0)
        order = names(pool.primary_servers())
        assert set(order[:3]) == set(near), order
        assert set(order[3:5]) == set(far), order
        assert order[5] == "s06", order  # unknown distance: last
        orders.add(tuple(order))
    # Still random inside each group.
    assert len({order[:3] for order in orders}) > 1
    assert len({order[3:5] for order in orders}) == 2


def test_without_distances_rebalance_shuffles_everything() -> None:
    heads = set()
    for seed in range(20):
        pool = make_pool(seed=seed)
        pool.refresh_server_lists(SERVERS, 6, None, 0.0)
        pool.rebalance(lambda server: True, 0.0)
        heads.add(pool.primary_servers()[0].name)
    assert len(heads) > 3


def test_find_nearest_prefers_the_usable_group_then_distance() -> None:
    pool = make_pool()
    pool.refresh_server_lists(SERVERS[:3], 6, None, 0.0)
    pool.set_backup_servers(SERVERS[3:])
    distances = {"s05": 0.0001, "s03": 0.010, "s02": 0.020}
    # A nearer backup does not beat a primary.
    found = pool.find_nearest(0.0, distances)
    assert found is not None
    assert found.name == "s03"
    # Primaries of unknown distance only when none is known.
    found = pool.find_nearest(0.0, {"s05": 0.0001})
    assert found is not None
    assert found == pool.find_server(0.0)


def test_set_distances_checks_values() -> None:
    pool = make_pool()
    with pytest.raises(PoolInputError, match="distances"):
        pool.set_distances({"s01": -1.0})
    with pytest.raises(PoolInputError, match="distances"):
        pool.set_distances({"s01": float("nan")})
