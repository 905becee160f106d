"""The ring with Ringman's settings against Go serialx/hashring's placements.

tests/vectors/ring/serialx.json holds lookups computed by an independent reference
of serialx/hashring's algorithm (tests/interop/node/serialx_ring.js): a ring built
with the file's settings (40 vnodes, 3 points, exact, lookup after) must give the
same owner for every key and the same virtual-node counts, except for the one case
marked ``ring_differs`` (a shared point, which serialx gives by insertion order).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controlplane.ring import EmptyRingError, HashRing, LookupRule, RingSettings, VnodeFormula

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "vectors" / "ring" / "serialx.json").read_text(
        encoding="utf-8"
    )
)
SETTINGS = RingSettings(
    vnodes=VECTORS["settings"]["vnodes"],
    points_per_vnode=VECTORS["settings"]["points_per_vnode"],
    vnode_formula=VnodeFormula(VECTORS["settings"]["vnode_formula"]),
    lookup=LookupRule(VECTORS["settings"]["lookup"]),
)
CASES: list[dict[str, Any]] = VECTORS["cases"]


def ring_of(case: dict[str, Any], settings: RingSettings = SETTINGS) -> HashRing:
    return HashRing({node["id"]: node["weight"] for node in case["nodes"]}, settings=settings)


def owner(ring: HashRing, key: str) -> str | None:
    try:
        return ring.get_node(key)
    except EmptyRingError:
        return None


def test_the_settings_are_ringmans() -> None:
    ringman = RingSettings(
        vnodes=40, points_per_vnode=3, vnode_formula=VnodeFormula.EXACT, lookup=LookupRule.AFTER
    )
    assert ringman == SETTINGS


@pytest.mark.parametrize("case", CASES, ids=lambda case: case["name"])
def test_the_ring_places_keys_as_serialx(case: dict[str, Any]) -> None:
    ring = ring_of(case)

    assert dict(ring.vnode_counts) == case["vnode_counts"]
    assert ring.point_count == case["point_count"]
    answers = [(lookup["key"], owner(ring, lookup["key"])) for lookup in case["lookups"]]
    expected = [(lookup["key"], lookup["node"]) for lookup in case["lookups"]]
    if case.get("ring_differs"):
        assert answers != expected
    else:
        assert answers == expected


def test_the_replicas_start_at_the_serialx_owner() -> None:
    case = next(c for c in CASES if c["name"] == "key-on-a-point")
    ring = ring_of(case)

    for lookup in case["lookups"]:
        assert ring.get_nodes(lookup["key"], 2)[0] == lookup["node"]


def test_keys_on_a_point_need_the_lookup_rule() -> None:
    """With the ketama rule the same ring gives every key that lands on a point of
    another node's vnode to that node: the rule is what makes these keys agree."""
    case = next(c for c in CASES if c["name"] == "key-on-a-point")
    ketama = ring_of(case, RingSettings(vnodes=40, points_per_vnode=3))

    differing = [
        lookup["key"]
        for lookup in case["lookups"]
        if ketama.get_node(lookup["key"]) != lookup["node"]
    ]
    # Each key lands on a point of its own node; the next point is another node's
    # about two times in three with three nodes.
    assert len(differing) > len(case["lookups"]) // 2
    for key in differing:
        assert ketama.get_node(key) == key.rpartition("-")[0]


def test_the_shared_point_goes_to_the_smaller_id_whatever_the_order() -> None:
    first, second = (c for c in CASES if c["name"].startswith("shared-point"))
    key = first["lookups"][0]["key"]

    assert {node["id"] for node in first["nodes"]} == {node["id"] for node in second["nodes"]}
    assert {first["lookups"][0]["node"], second["lookups"][0]["node"]} == {
        node["id"] for node in first["nodes"]
    }
    assert (
        owner(ring_of(first), key)
        == owner(ring_of(second), key)
        == min(node["id"] for node in first["nodes"])
    )


# serialx/hashring's own tests (hashring_test.go at 8b29126; its "Python hash_ring
# module test case"): (nodes, {key: owner}, {key: GetNodes(key, 2)}).
_ABC = {"test": "a", "test1": "b", "test2": "b", "test3": "c", "test4": "c", "test5": "a"}
UPSTREAM_CASES: list[tuple[str, dict[str, int], dict[str, str], dict[str, list[str]]]] = [
    (
        "TestNew",
        {"a": 1, "b": 1, "c": 1},
        {**_ABC, "aaaa": "b", "bbbb": "a"},
        {
            "test": ["a", "b"],
            "test1": ["b", "c"],
            "test2": ["b", "a"],
            "test3": ["c", "a"],
            "test4": ["c", "b"],
            "test5": ["a", "c"],
            "aaaa": ["b", "a"],
            "bbbb": ["a", "b"],
        },
    ),
    (
        "TestNewWeighted",
        {"a": 1, "b": 2, "c": 1},
        {
            **dict.fromkeys(["test", "test1", "test2", "test4", "test5", "aaaa"], "b"),
            "test3": "c",
            "bbbb": "a",
        },
        {"test": ["b", "a"], "test1": ["b", "c"], "test3": ["c", "b"], "bbbb": ["a", "b"]},
    ),
    (
        "TestRemoveNode",
        {"a": 1, "c": 1},
        {**_ABC, "test1": "c", "test2": "a", "aaaa": "a", "bbbb": "a"},
        {"test": ["a", "c"], "test1": ["c", "a"], "test4": ["c", "a"], "bbbb": ["a", "c"]},
    ),
    (
        "TestAddNode3 (+d)",
        {"a": 1, "b": 1, "c": 1, "d": 1},
        {**_ABC, "aaaa": "b", "bbbb": "a"},
        {"test1": ["b", "d"], "test3": ["c", "d"], "test5": ["a", "d"]},
    ),
    (
        "TestAddNode3 (+d, e)",
        {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1},
        {**_ABC, "aaaa": "b", "bbbb": "e"},
        {"test": ["a", "b"]},
    ),
    (
        "TestAddNode3 (+d, e, f)",
        {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1},
        {**_ABC, "test2": "f", "test3": "f", "test5": "f", "aaaa": "b", "bbbb": "e"},
        {"test": ["a", "b"]},
    ),
    ("TestNewSingle", {"a": 1}, {"test": "a", "test14": "a", "test20": "a"}, {}),
]


@pytest.mark.parametrize(
    ("nodes", "owners", "replicas"),
    [case[1:] for case in UPSTREAM_CASES],
    ids=[case[0] for case in UPSTREAM_CASES],
)
def test_serialx_upstream_cases(
    nodes: dict[str, int], owners: dict[str, str], replicas: dict[str, list[str]]
) -> None:
    built = HashRing(nodes, settings=SETTINGS)
    # serialx rebuilds its ring on every AddNode; the derived ring must agree too.
    derived = HashRing(settings=SETTINGS)
    for node_id, weight in nodes.items():
        derived = derived.with_node(node_id, weight)

    for ring in (built, derived):
        assert {key: ring.get_node(key) for key in owners} == owners
        assert {key: ring.get_nodes(key, 2) for key in replicas} == replicas
