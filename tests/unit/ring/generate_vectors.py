"""Regenerate tests/vectors/ring/{key_points,vnode_counts,rings}.json.

Run from the repository root with the client package importable, e.g.
``PYTHONPATH=clients/python .venv/bin/python -m tests.unit.ring.generate_vectors``.

The vectors are written by this ring, so before writing anything the generator
checks every ordinary lookup against PyPI uhashring (an independent ketama
implementation) and refuses to write if they disagree. The two deliberately
constructed edge cases (a key whose point equals a ring point, and two nodes
sharing a point) follow docs/ring.md, where uhashring differs; the files say so.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import uhashring

from controlplane.ring import (
    HashRing,
    RingSettings,
    VnodeFormula,
    key_point,
    vnode_count,
)
from controlplane.ring.ketama import vnode_points

VECTOR_DIR = Path(__file__).resolve().parents[2] / "vectors" / "ring"
LOOKUP_REPLICAS = 3


def write(name: str, document: dict[str, Any]) -> None:
    path = VECTOR_DIR / name
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def key_point_vectors() -> dict[str, Any]:
    text_keys = ["a", "key-0", "user:42", "é", "ключ", "🙂", "x" * 300, "10.0.0.1:11211-0"]
    byte_keys = [b"\xc3\xa9", b"\xff\x00\x01", b"\x00"]
    vectors: list[dict[str, Any]] = []
    for key in text_keys:
        digest = hashlib.md5(key.encode()).hexdigest()
        vectors.append({"key": key, "md5": digest, "point": key_point(key)})
    for raw in byte_keys:
        digest = hashlib.md5(raw).hexdigest()
        vectors.append({"key_hex": raw.hex(), "md5": digest, "point": key_point(raw)})
    vnode_vectors = []
    for node_id, index in [("10.0.0.1:11211", 0), ("10.0.0.1:11211", 39), ("node-07", 12)]:
        name = f"{node_id}-{index}"
        vnode_vectors.append(
            {
                "node": node_id,
                "index": index,
                "name": name,
                "md5": hashlib.md5(name.encode()).hexdigest(),
                "points": list(vnode_points(node_id, index, 4)),
            }
        )
    return {
        "description": (
            "Key points: MD5 of the key bytes (UTF-8 for text keys, key_hex decoded for byte "
            "keys); the point is digest bytes 0-3 read as a little-endian unsigned 32-bit "
            "integer. Virtual-node points: MD5 of '<node>-<index>', four little-endian "
            "unsigned 32-bit integers from digest bytes 0-3, 4-7, 8-11, 12-15."
        ),
        "keys": vectors,
        "vnodes": vnode_vectors,
    }


def vnode_count_vectors() -> dict[str, Any]:
    weight_sets = {
        "equal-3": [1, 1, 1],
        "equal-7": [1] * 7,
        "weighted-3": [1, 2, 3],
        "weighted-10": list(range(1, 11)),
        "weighted-17": [3, *([1] * 16)],
        "tiny-node": [1, 1000],
        "heavy": [4_000_000_000, 1, 1],
    }
    vectors = []
    for name, weights in weight_sets.items():
        for vnodes in (40, 160):
            total = sum(weights)
            vectors.append(
                {
                    "name": f"{name}/vnodes={vnodes}",
                    "vnodes": vnodes,
                    "weights": weights,
                    "exact": [vnode_count(w, total, len(weights), vnodes) for w in weights],
                    "float64": [
                        vnode_count(w, total, len(weights), vnodes, VnodeFormula.FLOAT64)
                        for w in weights
                    ],
                }
            )
    return {
        "description": (
            "Virtual-node counts per weight. exact = floor(vnodes * n * w / W) in integers; "
            "float64 = floor(((w / W) * vnodes) * n) in IEEE-754 binary64 (npm hashring). "
            "n is the number of nodes, W the sum of weights."
        ),
        "cases": vectors,
    }


def settings_json(settings: RingSettings) -> dict[str, Any]:
    return {
        "vnodes": settings.vnodes,
        "points_per_vnode": settings.points_per_vnode,
        "vnode_formula": settings.vnode_formula.value,
    }


def ring_vector(
    name: str,
    weights: dict[str, int],
    keys: list[str],
    settings: RingSettings | None = None,
    note: str | None = None,
    check_uhashring: bool = True,
) -> dict[str, Any]:
    settings = settings or RingSettings()
    ring = HashRing(weights, settings=settings)
    if check_uhashring and settings.vnode_formula is VnodeFormula.EXACT:
        peer = uhashring.HashRing(
            dict(weights),
            hash_fn="ketama",
            vnodes=settings.vnodes,
            replicas=settings.points_per_vnode,
        )
        for key in keys:
            assert ring.get_node(key) == peer.get_node(key), (name, key)
    points = ring.points()
    vector: dict[str, Any] = {
        "name": name,
        "settings": settings_json(settings),
        "nodes": [{"id": node_id, "weight": weight} for node_id, weight in weights.items()],
        "checksum": ring.checksum,
        "checksum_hex": f"{ring.checksum:016x}",
        "vnode_counts": dict(ring.vnode_counts),
        "point_count": ring.point_count,
        "first_points": [[point, owner] for point, owner in points[:4]],
        "last_points": [[point, owner] for point, owner in points[-2:]],
        "lookups": [
            {
                "key": key,
                "point": key_point(key),
                "node": ring.get_node(key),
                "nodes": ring.get_nodes(key, LOOKUP_REPLICAS),
            }
            for key in keys
        ],
    }
    if note:
        vector["note"] = note
    return vector


def find_shared_point() -> tuple[str, str, int]:
    """Find two node ids with a virtual node each (index < 40) on the same point."""
    seen: dict[int, str] = {}
    for number in range(100_000):
        node_id = f"tie-{number}"
        for index in range(40):
            for point in vnode_points(node_id, index, 4):
                other = seen.setdefault(point, node_id)
                if other != node_id:
                    return other, node_id, point
    raise RuntimeError("no shared point found")


def key_landing_on(ring: HashRing, point: int, prefix: str) -> str:
    points = [p for p, _ in ring.points()]
    previous = max((p for p in points if p < point), default=points[-1])
    for number in range(10_000_000):
        key = f"{prefix}{number}"
        kp = key_point(key)
        if previous < kp <= point:
            return key
    raise RuntimeError("no key found")


def key_on_a_point(ring: HashRing, prefix: str) -> str:
    points = {p for p, _ in ring.points()}
    for number in range(50_000_000):
        key = f"{prefix}{number}"
        if key_point(key) in points:
            return key
    raise RuntimeError("no key found")


def ring_vectors() -> dict[str, Any]:
    keys = [f"key-{i}" for i in range(20)] + ["user:42", "é", "ключ-7", "🙂"]
    hosts = [f"10.0.0.{i}:11211" for i in (1, 2, 3)]
    vectors = [
        ring_vector("empty", {}, []),
        ring_vector("single", {"solo": 1}, keys),
        ring_vector("equal-3", dict.fromkeys(hosts, 1), keys),
        ring_vector("weighted-3", dict(zip(hosts, [1, 2, 3], strict=True)), keys),
        ring_vector(
            "weighted-10",
            {f"node-{i:02d}": i + 1 for i in range(10)},
            keys,
        ),
        ring_vector(
            "hash-ring-compat",
            {"alpha": 1, "beta": 1, "gamma": 2},
            keys,
            settings=RingSettings(vnodes=40, points_per_vnode=3),
        ),
        ring_vector(
            "small-vnodes",
            {"alpha": 1, "beta": 5},
            keys,
            settings=RingSettings(vnodes=5, points_per_vnode=1),
        ),
        ring_vector(
            "equal-7-float64",
            {f"shard-{i}": 1 for i in range(7)},
            keys,
            settings=RingSettings(vnode_formula=VnodeFormula.FLOAT64),
            note="npm hashring's count (39 vnodes each); the exact formula gives 40.",
        ),
        ring_vector(
            "tiny-node",
            {"big": 1000, "tiny": 1},
            keys,
            note="tiny earns floor(40 * 2 * 1 / 1001) = 0 vnodes: it is a member but owns no key.",
        ),
    ]

    first, second, shared = find_shared_point()
    tie_ring = HashRing({first: 1, second: 1})
    tie_key = key_landing_on(tie_ring, shared, "tie-key-")
    vectors.append(
        ring_vector(
            "shared-point",
            {first: 1, second: 1},
            [tie_key, *keys[:4]],
            check_uhashring=False,
            note=(
                f"{first} and {second} both have a point at {shared}; key {tie_key!r} resolves "
                f"to that point, which goes to the smaller id ({min(first, second)}). "
                "uhashring gives shared points to the node inserted last instead."
            ),
        )
    )

    hundred = {f"node-{i:03d}": 1 for i in range(100)}
    exact_key = key_on_a_point(HashRing(hundred), "probe-")
    vectors.append(
        ring_vector(
            "key-on-a-point",
            hundred,
            [exact_key],
            check_uhashring=False,
            note=(
                f"key {exact_key!r} hashes exactly onto a ring point; the owner is that "
                "point's node (first point >= key point, as libketama and npm hashring). "
                "uhashring takes the next point (first point > key point) instead."
            ),
        )
    )
    return {
        "description": (
            "Rings: settings, members, expected checksum (uint64 and hex), vnode counts, the "
            "first and last continuum points, and lookups: key point, get_node and "
            f"get_nodes(key, {LOOKUP_REPLICAS})."
        ),
        "rings": vectors,
    }


def main() -> None:
    write("key_points.json", key_point_vectors())
    write("vnode_counts.json", vnode_count_vectors())
    write("rings.json", ring_vectors())


if __name__ == "__main__":
    main()
