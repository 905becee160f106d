"""The client-side ring rebuilt from a snapshot, with the ring's settings."""

from __future__ import annotations

import pytest

from controlplane.client.ringview import RingState, settings_from_proto, settings_to_proto
from controlplane.ring import (
    DEFAULT_RING_SETTINGS,
    HashRing,
    LookupRule,
    RingSettings,
    VnodeFormula,
)
from controlplane.v1 import ring_pb2

RINGMAN = RingSettings(vnodes=40, points_per_vnode=3, lookup=LookupRule.AFTER)
WEIGHTS = {"10.0.0.1:8080": 1, "10.0.0.2:8080": 1, "10.0.0.3:8080": 2}


def snapshot(settings: ring_pb2.RingSettings | None, checksum: int) -> ring_pb2.RingSnapshot:
    return ring_pb2.RingSnapshot(
        name="cache",
        version=1,
        checksum=checksum,
        nodes=[
            ring_pb2.RingNode(id=node_id, address=node_id.split(":")[0], port=8080, weight=weight)
            for node_id, weight in WEIGHTS.items()
        ],
        settings=settings,
    )


@pytest.mark.parametrize(
    "settings",
    [
        DEFAULT_RING_SETTINGS,
        RINGMAN,
        RingSettings(vnodes=1000, points_per_vnode=1, vnode_formula=VnodeFormula.FLOAT64),
    ],
)
def test_settings_round_trip(settings: RingSettings) -> None:
    assert settings_from_proto(settings_to_proto(settings)) == settings


def test_a_snapshot_is_rebuilt_with_its_settings() -> None:
    agent_ring = HashRing(WEIGHTS, settings=RINGMAN)

    state = RingState.of(snapshot(settings_to_proto(RINGMAN), agent_ring.checksum))

    assert state.ring == agent_ring
    assert state.checksum_matches
    on_points = [f"10.0.0.1:8080-{index}" for index in range(30)]
    assert [state.get_node(key) for key in on_points] == [
        agent_ring.get_node(key) for key in on_points
    ]


def test_a_snapshot_without_settings_uses_the_defaults() -> None:
    """An agent that predates the settings always placed keys with the defaults."""
    state = RingState.of(snapshot(None, HashRing(WEIGHTS).checksum))

    assert state.ring.settings == DEFAULT_RING_SETTINGS
    assert state.checksum_matches


@pytest.mark.parametrize(
    "message",
    [
        ring_pb2.RingSettings(vnodes=1001),
        ring_pb2.RingSettings(vnodes=2**32 - 1),
        ring_pb2.RingSettings(points_per_vnode=5),
        ring_pb2.RingSettings(vnode_formula=7),  # type: ignore[arg-type]
        ring_pb2.RingSettings(lookup=9),  # type: ignore[arg-type]
    ],
)
def test_settings_beyond_the_limits_are_not_believed(message: ring_pb2.RingSettings) -> None:
    assert settings_from_proto(message) is None
    # The client still answers, and says it places keys differently from the agent.
    state = RingState.of(snapshot(message, checksum=12345))
    assert state.ring.settings == DEFAULT_RING_SETTINGS
    assert not state.checksum_matches
