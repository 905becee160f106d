"""Interop: controlplane.ring.HashRing places keys exactly as npm hashring 3.2.0.

tests/interop/node/ring.js runs the real npm package under Node.js on the cases of
tests/vectors/ring/interop_cases.json (3, 10 and 100 nodes, equal and unequal
weights, 100,000 keys each) and prints every owner; this test compares them with
the Python ring key by key. It needs ``node`` and ``npm ci --prefix
tests/interop/node``: without them it skips, except under CI (``CI=true``), where
a missing peer is a failure rather than a silently skipped comparison.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controlplane.ring import HashRing, RingSettings, VnodeFormula
from tests.ci import in_ci

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "ring.js"
CASES_FILE = Path(__file__).resolve().parents[1] / "vectors" / "ring" / "interop_cases.json"
CASES_DOC: dict[str, Any] = json.loads(CASES_FILE.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = CASES_DOC["cases"]
FLOAT64_CASES: list[dict[str, Any]] = CASES_DOC["hashring_only"]
ALL_CASES = CASES + FLOAT64_CASES
REPLICA_KEYS = 2_000
REPLICA_COUNT = 3
NODE_TIMEOUT_SECONDS = 120


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


def missing_peer() -> str | None:
    """Say why the Node.js peer cannot run, or return None when it can."""
    if shutil.which("node") is None:
        return "the `node` executable is not on PATH"
    if not (NODE_DIR / "node_modules" / "hashring" / "package.json").is_file():
        return (
            "tests/interop/node/node_modules is missing; run `npm ci --prefix tests/interop/node`"
        )
    return None


def hashring_results() -> dict[str, dict[str, Any]]:
    """Return hashring's answers by case name; skip or (under CI) fail without the peer.

    Called from each test body rather than used as a fixture so that, under CI, a
    missing peer is reported as a failed test and not as a fixture error.
    """
    reason = missing_peer()
    if reason is not None:
        if in_ci():
            pytest.fail(f"CI=true but the npm hashring peer cannot run: {reason}")
        pytest.skip(f"npm hashring peer unavailable: {reason}")
    return _run_hashring()


@functools.cache
def _run_hashring() -> dict[str, dict[str, Any]]:
    # One Node.js process answers every case; its output is shared by all tests.
    spec = {
        "cases": [
            {**case, "ranges": {"count": REPLICA_KEYS, "size": REPLICA_COUNT}} for case in ALL_CASES
        ]
    }
    completed = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=NODE_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout)
    assert output["hashring_version"] == "3.2.0"
    return {result["name"]: result for result in output["cases"]}


@pytest.mark.parametrize("case", ALL_CASES, ids=[case["name"] for case in ALL_CASES])
def test_every_key_has_the_same_owner(
    case: dict[str, Any],
) -> None:
    ring = our_ring(case)
    keys = case_keys(case)
    theirs = hashring_results()[case["name"]]["owners"]
    assert len(keys) == len(theirs) == 100_000

    mismatches = [
        (key, owner) for key, owner in zip(keys, theirs, strict=True) if ring.get_node(key) != owner
    ]

    assert mismatches == [], f"{len(mismatches)} keys placed differently, e.g. {mismatches[:5]}"


@pytest.mark.parametrize("case", ALL_CASES, ids=[case["name"] for case in ALL_CASES])
def test_vnode_counts_match(
    case: dict[str, Any],
) -> None:
    ring = our_ring(case)

    assert hashring_results()[case["name"]]["vnode_counts"] == dict(ring.vnode_counts)


@pytest.mark.parametrize("case", ALL_CASES, ids=[case["name"] for case in ALL_CASES])
def test_replicas_match_hashring_range(
    case: dict[str, Any],
) -> None:
    ring = our_ring(case)
    keys = case_keys(case)[:REPLICA_KEYS]
    theirs = hashring_results()[case["name"]]["ranges"]

    assert [ring.get_nodes(key, REPLICA_COUNT) for key in keys] == theirs


@pytest.mark.parametrize("case", FLOAT64_CASES, ids=[case["name"] for case in FLOAT64_CASES])
def test_float64_formula_is_what_sets_hashring_apart(
    case: dict[str, Any],
) -> None:
    # The hashring-only cases exist because exact arithmetic gives a different
    # count there; if it did not, they would prove nothing about the option.
    exact = HashRing(dict(case["nodes"]))

    assert hashring_results()[case["name"]]["vnode_counts"] != dict(exact.vnode_counts)
