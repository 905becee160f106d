"""Property tests of the ring's consistency guarantees (hypothesis, derandomised)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.ring import HashRing

# Derandomised so a failure reproduces on every machine; no example database so
# runs do not depend on earlier runs.
DETERMINISTIC = settings(derandomize=True, deadline=None, database=None, max_examples=40)

KEYS = [f"key-{number}" for number in range(4_000)]

node_ids = st.text(
    alphabet=st.characters(
        min_codepoint=0x21,
        max_codepoint=0x2FFF,
        exclude_categories=("Cs", "Cc"),
    ),
    min_size=1,
    max_size=12,
)
weights = st.integers(min_value=1, max_value=20)


def owners(ring: HashRing) -> list[str]:
    return [ring.get_node(key) for key in KEYS]


@DETERMINISTIC
@given(ids=st.sets(node_ids, min_size=1, max_size=30), newcomer=node_ids)
def test_adding_a_node_moves_about_its_share_and_only_onto_it(ids: set[str], newcomer: str) -> None:
    if newcomer in ids:
        return
    before = HashRing(ids)
    after = before.with_node(newcomer)

    moved = [
        (old, new) for old, new in zip(owners(before), owners(after), strict=True) if old != new
    ]

    assert all(new == newcomer for _, new in moved)
    share = len(moved) / len(KEYS)
    expected = 1 / (len(ids) + 1)
    assert 0.4 * expected <= share <= 1.8 * expected, (share, expected)


@DETERMINISTIC
@given(ids=st.sets(node_ids, min_size=2, max_size=30), data=st.data())
def test_removing_a_node_moves_only_its_keys(ids: set[str], data: st.DataObject) -> None:
    leaver = data.draw(st.sampled_from(sorted(ids)))
    before = HashRing(ids)
    after = before.without_node(leaver)

    for old, new in zip(owners(before), owners(after), strict=True):
        if old != leaver:
            assert new == old
        else:
            assert new != leaver


@DETERMINISTIC
@given(
    members=st.dictionaries(node_ids, weights, min_size=1, max_size=20),
    key=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20),
    n=st.integers(min_value=1, max_value=25),
)
def test_get_nodes_returns_distinct_owners_led_by_get_node(
    members: dict[str, int], key: str, n: int
) -> None:
    ring = HashRing(members)
    owning = {node_id for node_id, count in ring.vnode_counts.items() if count}

    nodes = ring.get_nodes(key, n)

    assert len(nodes) == len(set(nodes)) == min(n, len(owning))
    assert set(nodes) <= owning
    assert nodes[0] == ring.get_node(key)
    assert ring.get_nodes(key, 1) == nodes[:1]


@DETERMINISTIC
@given(members=st.dictionaries(node_ids, weights, min_size=1, max_size=20), data=st.data())
def test_checksum_ignores_order_and_tracks_weights(
    members: dict[str, int], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(list(members.items())))
    ring = HashRing(members)
    reordered = HashRing(dict(shuffled))

    assert reordered.checksum == ring.checksum
    assert reordered.points() == ring.points()

    node_id = data.draw(st.sampled_from(sorted(members)))
    new_weight = data.draw(weights.filter(lambda weight: weight != members[node_id]))
    assert ring.with_node(node_id, new_weight).checksum != ring.checksum


@DETERMINISTIC
@given(members=st.dictionaries(node_ids, weights, min_size=1, max_size=20), data=st.data())
def test_membership_changes_commute(members: dict[str, int], data: st.DataObject) -> None:
    node_id = data.draw(st.sampled_from(sorted(members)))
    ring = HashRing(members)

    rebuilt = ring.without_node(node_id).with_node(node_id, members[node_id])

    assert rebuilt == ring
    assert rebuilt.checksum == ring.checksum
    assert rebuilt.points() == ring.points()
