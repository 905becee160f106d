"""Regenerate tests/vectors/ring/serialx.json: placements of Go's serialx/hashring.

Run from the repository root with the client package importable and Node.js on
PATH, e.g. ``PYTHONPATH=clients/python .venv/bin/python -m
tests.unit.ring.generate_serialx_vectors``.

Every answer in the file comes from tests/interop/node/serialx_ring.js, a reference
written from serialx/hashring's algorithm (the revision Ringman was built
against), not from this project's ring: this script only chooses the inputs,
including the two edge cases where the rules matter (keys that land exactly on a
ring point, and two nodes sharing a point). tests/unit/ring/test_serialx_vectors.py
checks the ring against the file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from controlplane.ring import key_point
from controlplane.ring.ketama import vnode_points

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = ROOT / "tests" / "interop" / "node" / "serialx_ring.js"
OUTPUT = ROOT / "tests" / "vectors" / "ring" / "serialx.json"
# serialx hard-codes 40 virtual nodes of 3 points each.
SERIALX_VNODES = 40
SERIALX_POINTS = 3
RINGMAN_SETTINGS = {
    "vnodes": SERIALX_VNODES,
    "points_per_vnode": SERIALX_POINTS,
    "vnode_formula": "exact",
    "lookup": "after",
}
HOSTS = [f"10.0.0.{i}:8080" for i in (1, 2, 3)]
KEYS = [f"key-{i}" for i in range(300)] + ["user:42", "é", "ключ-7", "🙂"]


def run_reference(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec = json.dumps({"cases": cases})
    completed = subprocess.run(
        ["node", str(REFERENCE)], input=spec, capture_output=True, text=True, check=True
    )
    results: list[dict[str, Any]] = json.loads(completed.stdout)["cases"]
    return results


def points_of(node_id: str) -> list[int]:
    return [
        point
        for index in range(SERIALX_VNODES)
        for point in vnode_points(node_id, index, SERIALX_POINTS)
    ]


def find_shared_point() -> tuple[str, str, int]:
    """Two node ids whose virtual nodes (40 of 3 points) share a point value."""
    seen: dict[int, str] = {}
    for number in range(100_000):
        node_id = f"tie-{number}"
        for point in points_of(node_id):
            other = seen.setdefault(point, node_id)
            if other != node_id:
                return other, node_id, point
    raise RuntimeError("no shared point found")


def key_below(points: list[int], point: int, prefix: str) -> str:
    """A key whose point lies strictly between ``point`` and the ring point before it."""
    previous = max((p for p in points if p < point), default=max(points))
    for number in range(10_000_000):
        key = f"{prefix}{number}"
        if previous < key_point(key) < point:
            return key
    raise RuntimeError("no key found")


def main() -> None:
    first, second, shared = find_shared_point()
    small, large = sorted((first, second))
    tie_points = points_of(small) + points_of(large)
    tie_key = key_below(tie_points, shared, "tie-key-")
    # Key "<id>-<j>" hashes like virtual node j of id, so it lands exactly on that
    # virtual node's first point: the case where the lookup rule decides.
    on_points = [f"{host}-{index}" for host in HOSTS for index in range(SERIALX_VNODES)]
    cases: list[dict[str, Any]] = [
        {"name": "empty", "nodes": [], "keys": KEYS[:3]},
        {"name": "single", "nodes": ["solo:8080"], "keys": KEYS[:10]},
        {"name": "ringman-3", "nodes": HOSTS, "keys": KEYS},
        {
            "name": "weighted-5",
            "nodes": [[f"10.1.0.{i}:9000", i] for i in range(1, 6)],
            "keys": KEYS,
        },
        {
            "name": "ringman-100",
            "nodes": [f"10.2.{i // 250}.{i % 250}:8080" for i in range(100)],
            "keys": KEYS,
        },
        {"name": "key-on-a-point", "nodes": HOSTS, "keys": on_points},
        {"name": "shared-point-smaller-id-last", "nodes": [large, small], "keys": [tie_key]},
        {"name": "shared-point-smaller-id-first", "nodes": [small, large], "keys": [tie_key]},
    ]
    notes = {
        "key-on-a-point": (
            'each key "<id>-<j>" hashes to the first point of virtual node j of <id>; '
            "serialx gives it to the next point (lookup=after), ketama to that point"
        ),
        "shared-point-smaller-id-last": (
            f"{small} and {large} both have a point at {shared}; key {tie_key!r} resolves "
            "to it. serialx gives a shared point to the node inserted last, the ring to "
            "the smaller id: they agree here, where the smaller id was inserted last"
        ),
        "shared-point-smaller-id-first": (
            "the same ring with the other insertion order: serialx now answers the larger "
            "id and the ring still the smaller one, the one rule the settings cannot "
            "express (docs/ring.md, 'Moving from Ringman')"
        ),
    }
    results = run_reference(cases)
    document_cases = []
    for case, result in zip(cases, results, strict=True):
        nodes = [node if isinstance(node, list) else [node, 1] for node in case["nodes"]]
        vector: dict[str, Any] = {
            "name": case["name"],
            "nodes": [{"id": node_id, "weight": weight} for node_id, weight in nodes],
            "vnode_counts": result["vnode_counts"],
            "point_count": result["point_count"],
            "lookups": [
                {"key": key, "node": node}
                for key, node in zip(case["keys"], result["owners"], strict=True)
            ],
        }
        if case["name"] in notes:
            vector["note"] = notes[case["name"]]
        if case["name"] == "shared-point-smaller-id-first":
            vector["ring_differs"] = True
        document_cases.append(vector)
    document = {
        "description": (
            "Placements of Go's github.com/serialx/hashring at commit 8b29126 (the ring of "
            "github.com/Nitro/ringman), computed by tests/interop/node/serialx_ring.js, a "
            "reference written from its algorithm; regenerate with "
            "tests/unit/ring/generate_serialx_vectors.py. `nodes` are in insertion order "
            "(Ringman's AddNode order); `settings` are the ring settings that reproduce "
            "every lookup except those of cases marked ring_differs (docs/ring.md)."
        ),
        "settings": RINGMAN_SETTINGS,
        "cases": document_cases,
    }
    OUTPUT.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
