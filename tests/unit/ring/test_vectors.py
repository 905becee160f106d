"""The ring against the committed vectors in tests/vectors/ring/.

The vectors pin the wire-visible behaviour that other implementations must share:
key points, virtual-node points and counts, continuum order, lookups, replicas and
checksums. A change that alters any of them changes placement for every client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controlplane.ring import (
    EmptyRingError,
    HashRing,
    RingSettings,
    VnodeFormula,
    key_point,
    vnode_count,
)
from controlplane.ring.ketama import vnode_points

VECTOR_DIR = Path(__file__).resolve().parents[2] / "vectors" / "ring"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((VECTOR_DIR / name).read_text(encoding="utf-8"))
    return document


KEY_POINTS = load("key_points.json")
VNODE_COUNTS = load("vnode_counts.json")
RINGS = load("rings.json")["rings"]


def ring_from(vector: dict[str, Any]) -> HashRing:
    settings = vector["settings"]
    return HashRing(
        {node["id"]: node["weight"] for node in vector["nodes"]},
        settings=RingSettings(
            vnodes=settings["vnodes"],
            points_per_vnode=settings["points_per_vnode"],
            vnode_formula=VnodeFormula(settings["vnode_formula"]),
        ),
    )


@pytest.mark.parametrize(
    "vector", KEY_POINTS["keys"], ids=lambda v: repr(v.get("key", v.get("key_hex")))[:24]
)
def test_key_point(vector: dict[str, Any]) -> None:
    key: str | bytes = vector["key"] if "key" in vector else bytes.fromhex(vector["key_hex"])
    digest = bytes.fromhex(vector["md5"])

    assert key_point(key) == vector["point"]
    assert int.from_bytes(digest[:4], "little") == vector["point"]


@pytest.mark.parametrize("vector", KEY_POINTS["vnodes"], ids=lambda v: v["name"])
def test_vnode_points(vector: dict[str, Any]) -> None:
    digest = bytes.fromhex(vector["md5"])

    assert list(vnode_points(vector["node"], vector["index"], 4)) == vector["points"]
    assert [int.from_bytes(digest[4 * j : 4 * j + 4], "little") for j in range(4)] == vector[
        "points"
    ]


@pytest.mark.parametrize("vector", VNODE_COUNTS["cases"], ids=lambda v: v["name"])
def test_vnode_counts(vector: dict[str, Any]) -> None:
    weights: list[int] = vector["weights"]
    total, count, vnodes = sum(weights), len(weights), vector["vnodes"]

    assert [vnode_count(w, total, count, vnodes) for w in weights] == vector["exact"]
    assert [vnode_count(w, total, count, vnodes, VnodeFormula.FLOAT64) for w in weights] == vector[
        "float64"
    ]


@pytest.mark.parametrize("vector", RINGS, ids=lambda v: v["name"])
def test_ring_shape_and_checksum(vector: dict[str, Any]) -> None:
    ring = ring_from(vector)
    points = ring.points()

    assert ring.checksum == vector["checksum"]
    assert f"{ring.checksum:016x}" == vector["checksum_hex"]
    assert dict(ring.vnode_counts) == vector["vnode_counts"]
    assert ring.point_count == vector["point_count"]
    assert [[p, o] for p, o in points[:4]] == vector["first_points"]
    assert [[p, o] for p, o in points[-2:]] == vector["last_points"]


@pytest.mark.parametrize("vector", RINGS, ids=lambda v: v["name"])
def test_ring_lookups(vector: dict[str, Any]) -> None:
    ring = ring_from(vector)

    for lookup in vector["lookups"]:
        key = lookup["key"]
        assert key_point(key) == lookup["point"], key
        assert ring.get_node(key) == lookup["node"], key
        assert ring.get_nodes(key, len(lookup["nodes"])) == lookup["nodes"], key


def test_empty_vector_ring_refuses_lookups() -> None:
    empty = next(vector for vector in RINGS if vector["name"] == "empty")
    ring = ring_from(empty)

    with pytest.raises(EmptyRingError):
        ring.get_node("anything")
