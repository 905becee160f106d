"""Interop: controlplane.ring.HashRing places keys exactly as PyPI uhashring (ketama).

For every case in tests/vectors/ring/interop_cases.json (3, 10 and 100 nodes, equal
and unequal weights, 100,000 keys each) both rings must name the same owner for
every key, derive the same virtual-node counts, and walk the same replicas.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controlplane.ring import HashRing, RingSettings, VnodeFormula
from tests.ci import in_ci

try:
    import uhashring
except ImportError:  # requirements-dev.txt installs it; only a partial local setup lacks it
    if in_ci():
        raise ImportError("uhashring missing: `make venv` installs requirements-dev.txt") from None
    pytest.skip("uhashring is a test dependency (requirements-dev.txt)", allow_module_level=True)

CASES_FILE = Path(__file__).resolve().parents[1] / "vectors" / "ring" / "interop_cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]
REPLICA_KEYS = 2_000
REPLICA_COUNT = 3


def case_keys(case: dict[str, Any]) -> list[str]:
    rule = case["key_rule"]
    start = rule["start"]
    return [f"{rule['prefix']}{i}{rule['suffix']}" for i in range(start, start + rule["count"])]


def our_ring(case: dict[str, Any]) -> HashRing:
    settings = case["settings"]
    return HashRing(
        dict(case["nodes"]),
        settings=RingSettings(
            vnodes=settings["vnodes"],
            points_per_vnode=settings["points_per_vnode"],
            vnode_formula=VnodeFormula(settings["vnode_formula"]),
        ),
    )


def their_ring(case: dict[str, Any]) -> Any:
    settings = case["settings"]
    return uhashring.HashRing(
        dict(case["nodes"]),
        hash_fn="ketama",
        vnodes=settings["vnodes"],
        replicas=settings["points_per_vnode"],
    )


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_every_key_has_the_same_owner(case: dict[str, Any]) -> None:
    ours, theirs = our_ring(case), their_ring(case)
    keys = case_keys(case)
    assert len(keys) == 100_000

    mismatches = [key for key in keys if ours.get_node(key) != theirs.get_node(key)]

    assert mismatches == [], f"{len(mismatches)} keys placed differently, e.g. {mismatches[:5]}"


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_vnode_counts_and_points_match(case: dict[str, Any]) -> None:
    ours, theirs = our_ring(case), their_ring(case)
    points_per_vnode = case["settings"]["points_per_vnode"]

    assert dict(theirs.distribution) == {
        node_id: count * points_per_vnode for node_id, count in ours.vnode_counts.items()
    }
    assert [point for point, _ in ours.points()] == theirs.runtime._keys


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_replicas_match_uhashring_range(case: dict[str, Any]) -> None:
    ours, theirs = our_ring(case), their_ring(case)

    for key in case_keys(case)[:REPLICA_KEYS]:
        expected = [conf["nodename"] for conf in theirs.range(key, size=REPLICA_COUNT)]
        assert ours.get_nodes(key, REPLICA_COUNT) == expected, key
