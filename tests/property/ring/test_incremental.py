"""HashRing.with_changes against HashRing.from_nodes of the same final member set.

A derived ring splices its continuum and patches its lookup table instead of
rebuilding them; on random sequences of additions, removals and weight changes it
must hold exactly what a fresh build holds: the same points in the same order, the
same checksum, vnode counts, lookup table and answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.ring import HashRing, LookupRule, RingNode, RingSettings, VnodeFormula, hashring
from controlplane.ring.ketama import vnode_points

PROFILE = settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)

KEYS = [f"key-{number}" for number in range(300)]

# tie-184 and tie-434 have a virtual node each on the same point (tests/vectors/ring).
POOL = ["tie-184", "tie-434", "a", "b", "c", "node-1", "node-2", "ключ", "🙂", "z" * 20]

ring_settings = st.builds(
    RingSettings,
    vnodes=st.sampled_from([1, 2, 5, 40]),
    points_per_vnode=st.integers(min_value=1, max_value=4),
    vnode_formula=st.sampled_from(list(VnodeFormula)),
    lookup=st.sampled_from(list(LookupRule)),
)
equal_weights = st.just(1)
any_weights = st.sampled_from([1, 1, 2, 3, 7, 1000])
METADATA = [{}, {"port": "1"}, {"port": "2"}]


def batches(weights: st.SearchStrategy[int]) -> st.SearchStrategy[list[list[tuple[int, int, int]]]]:
    """Batches of (id index, weight, metadata index); weight 0 means remove."""
    change = st.tuples(
        st.integers(min_value=0, max_value=len(POOL) - 1),
        st.one_of(st.just(0), weights),
        st.integers(min_value=0, max_value=len(METADATA) - 1),
    )
    return st.lists(st.lists(change, max_size=5), min_size=1, max_size=10)


def assert_same(derived: HashRing, fresh: HashRing) -> None:
    assert derived == fresh
    assert derived.points() == fresh.points()
    assert derived.checksum == fresh.checksum
    assert list(derived.vnode_counts.items()) == list(fresh.vnode_counts.items())
    assert list(derived.nodes) == list(fresh.nodes)
    assert derived.point_count == fresh.point_count
    # The lookup table is compared slot by slot: it must not merely give the same
    # answers, it must be the table a fresh build makes.
    assert derived._bucket_shift == fresh._bucket_shift
    assert derived._bucket_owner == fresh._bucket_owner
    assert derived._owning_node_count == fresh._owning_node_count
    assert derived._search is fresh._search
    if fresh.point_count:
        for key in KEYS:
            assert derived.get_node(key) == fresh.get_node(key)
            assert derived.get_nodes(key, 3) == fresh.get_nodes(key, 3)


def run(batches_: list[list[tuple[int, int, int]]], ring_settings_: RingSettings) -> None:
    members: dict[str, RingNode] = {}
    ring = HashRing(settings=ring_settings_)
    for batch in batches_:
        add: dict[str, RingNode] = {}
        remove: set[str] = set()
        for index, weight, meta in batch:
            node_id = POOL[index]
            if node_id in add or node_id in remove:
                continue
            if weight == 0:
                if node_id in members:
                    remove.add(node_id)
            else:
                add[node_id] = RingNode(node_id, weight, METADATA[meta])
        ring = ring.with_changes(add.values(), remove)
        for node_id in remove:
            del members[node_id]
        members.update(add)
        fresh = HashRing.from_nodes(members.values(), settings=ring_settings_)
        assert_same(ring, fresh)


@contextmanager
def incremental_only() -> Iterator[None]:
    """Never fall back to a full build, however much changes."""
    with mock.patch.object(hashring, "_FULL_BUILD_SHARE", float("inf")):
        yield


@contextmanager
def colliding_points() -> Iterator[None]:
    """Squeeze every point onto 64 values, so members share points all the time
    (and a member repeats its own), exercising every tie rule."""

    def squeezed(node_id: str, index: int, points_per_vnode: int) -> tuple[int, ...]:
        return tuple((point % 64) << 26 for point in vnode_points(node_id, index, points_per_vnode))

    with mock.patch.object(hashring, "vnode_points", squeezed):
        yield


@pytest.mark.parametrize("forced", [True, False], ids=["incremental", "auto"])
@PROFILE
@given(changes=batches(equal_weights), ring_settings_=ring_settings)
def test_equal_weights(
    forced: bool, changes: list[list[tuple[int, int, int]]], ring_settings_: RingSettings
) -> None:
    if forced:
        with incremental_only():
            run(changes, ring_settings_)
    else:
        run(changes, ring_settings_)


@pytest.mark.parametrize("forced", [True, False], ids=["incremental", "auto"])
@PROFILE
@given(changes=batches(any_weights), ring_settings_=ring_settings)
def test_unequal_weights(
    forced: bool, changes: list[list[tuple[int, int, int]]], ring_settings_: RingSettings
) -> None:
    if forced:
        with incremental_only():
            run(changes, ring_settings_)
    else:
        run(changes, ring_settings_)


@PROFILE
@given(changes=batches(any_weights), ring_settings_=ring_settings)
def test_colliding_points(
    changes: list[list[tuple[int, int, int]]], ring_settings_: RingSettings
) -> None:
    with incremental_only(), colliding_points():
        run(changes, ring_settings_)


@settings(derandomize=True, deadline=None, database=None, max_examples=25)
@given(
    base=st.integers(min_value=150, max_value=400),
    changes=st.lists(
        st.tuples(st.integers(min_value=0, max_value=499), st.sampled_from([0, 1, 2])),
        min_size=1,
        max_size=6,
    ),
)
def test_large_rings_keep_their_table_size(base: int, changes: list[tuple[int, int]]) -> None:
    """Rings big enough for the largest lookup table, where the table is patched."""
    members = {
        f"10.0.{i // 250}.{i % 250}:80": RingNode(f"10.0.{i // 250}.{i % 250}:80")
        for i in range(base)
    }
    ring = HashRing.from_nodes(members.values())
    for number, weight in changes:
        node_id = f"10.0.{number // 250}.{number % 250}:80"
        if weight == 0:
            if node_id in members:
                ring = ring.without_node(node_id)
                del members[node_id]
        else:
            ring = ring.with_node(node_id, weight)
            members[node_id] = RingNode(node_id, weight)
    assert_same(ring, HashRing.from_nodes(members.values()))
