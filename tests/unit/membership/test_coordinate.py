"""Vivaldi coordinates: Serf's coordinate tests (coordinate_test.go, client_test.go,
performance_test.go with phantom.go) as table tests, plus the wire checks."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from controlplane.membership.config import InvalidConfig
from controlplane.membership.coordinate import (
    MAX_COMPONENT,
    Coordinate,
    CoordinateConfig,
    RejectedSample,
    VivaldiClient,
    check_coordinate,
    diff,
    magnitude,
    unit_vector_at,
)

# util_test.go verifyEqualFloats
TOLERANCE = 1.0e-6

C3 = CoordinateConfig(dimensionality=3)
C3_FLAT = CoordinateConfig(dimensionality=3, height_min=0.0)


def coord(config: CoordinateConfig, vec: tuple[float, ...], **fields: float) -> Coordinate:
    return replace(Coordinate.origin(config), vec=vec, **fields)


def test_defaults_are_serfs() -> None:
    # config.go DefaultConfig, field by field.
    config = CoordinateConfig()
    assert (
        config.dimensionality,
        config.vivaldi_error_max,
        config.vivaldi_ce,
        config.vivaldi_cc,
        config.adjustment_window_size,
        config.height_min,
        config.latency_filter_size,
        config.gravity_rho,
    ) == (8, 1.5, 0.25, 0.25, 20, 10.0e-6, 3, 150.0)


@pytest.mark.parametrize(
    "fields", [{"dimensionality": 0}, {"vivaldi_ce": 0.0}, {"latency_filter_size": 0}]
)
def test_config_rejects_out_of_range(fields: dict[str, float]) -> None:
    with pytest.raises(InvalidConfig, match=next(iter(fields))):
        CoordinateConfig(**fields)  # type: ignore[arg-type]


def test_new_coordinate_is_origin_with_max_error() -> None:
    c = Coordinate.origin(CoordinateConfig())
    assert c == Coordinate((0.0,) * 8, 1.5, 0.0, 10.0e-6)


# coordinate_test.go TestCoordinate_IsValid: NaN and Inf in any field.
@pytest.mark.parametrize("index", range(8 + 3))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_is_valid(index: int, bad: float) -> None:
    c = Coordinate.origin(CoordinateConfig())
    assert c.is_valid()
    if index < 8:
        vec = list(c.vec)
        vec[index] = bad
        broken = replace(c, vec=tuple(vec))
    else:
        fields = [c.error, c.adjustment, c.height]
        fields[index - 8] = bad
        broken = Coordinate(c.vec, *fields)
    assert not broken.is_valid()


def test_is_compatible_with() -> None:
    c1, c2 = Coordinate.origin(C3), Coordinate.origin(C3)
    alien = Coordinate.origin(CoordinateConfig(dimensionality=2))
    assert c1.is_compatible_with(c2)
    assert c2.is_compatible_with(c1)
    assert not c1.is_compatible_with(alien)
    assert not alien.is_compatible_with(c1)


def test_apply_force() -> None:
    rng = random.Random(1)
    origin = Coordinate.origin(C3_FLAT)
    above = coord(C3_FLAT, (0.0, 0.0, 2.9))
    c = origin.apply_force(C3_FLAT, 5.3, above, rng)
    assert c.vec == pytest.approx((0.0, 0.0, -5.3), abs=TOLERANCE)
    right = coord(C3_FLAT, (3.4, 0.0, -5.3))
    c = c.apply_force(C3_FLAT, 2.0, right, rng)
    assert c.vec == pytest.approx((-2.0, 0.0, -5.3), abs=TOLERANCE)
    # Coincident points: a random direction, one unit away.
    c = origin.apply_force(C3_FLAT, 1.0, origin, rng)
    assert origin.distance_to(c) == pytest.approx(1.0, abs=TOLERANCE)
    # With a minimum height, the height follows the force; and it is enforced.
    config = CoordinateConfig(dimensionality=3, height_min=10.0e-6)
    origin = Coordinate.origin(config)
    c = origin.apply_force(config, 5.3, above, rng)
    assert c.vec == pytest.approx((0.0, 0.0, -5.3), abs=TOLERANCE)
    assert c.height == pytest.approx(10.0e-6 + 5.3 * 10.0e-6 / 2.9, abs=TOLERANCE)
    c = origin.apply_force(config, -5.3, above, rng)
    assert c.vec == pytest.approx((0.0, 0.0, 5.3), abs=TOLERANCE)
    assert c.height == pytest.approx(10.0e-6, abs=TOLERANCE)
    bad = coord(config, (0.0,) * 4)
    with pytest.raises(ValueError, match="dimensionality"):
        c.apply_force(config, 1.0, bad, rng)


# coordinate_test.go TestCoordinate_DistanceTo / rawDistanceTo.
BASE = 4.104875150354758


@pytest.mark.parametrize(
    ("a_fields", "b_fields", "distance", "raw"),
    [
        ({}, {}, BASE, BASE),
        ({"adjustment": -1.0e6}, {}, BASE, BASE),
        ({"adjustment": 0.1}, {"adjustment": 0.2}, BASE + 0.3, BASE),
        (
            {"adjustment": 0.1, "height": 0.7},
            {"adjustment": 0.2, "height": 0.1},
            BASE + 0.3 + 0.8,
            BASE + 0.8,
        ),
        ({"adjustment": 1.0e6}, {}, BASE + 1.0e6, BASE),
    ],
)
def test_distance_to(
    a_fields: dict[str, float], b_fields: dict[str, float], distance: float, raw: float
) -> None:
    c1 = coord(C3_FLAT, (-0.5, 1.3, 2.4), **a_fields)
    c2 = coord(C3_FLAT, (1.2, -2.3, 3.4), **b_fields)
    assert c1.distance_to(c2) == pytest.approx(distance, abs=TOLERANCE)
    assert c2.distance_to(c1) == pytest.approx(distance, abs=TOLERANCE)
    assert c1.raw_distance_to(c2) == pytest.approx(raw, abs=TOLERANCE)


def test_distance_to_self_is_zero_and_dimension_mismatch_raises() -> None:
    c1 = coord(C3_FLAT, (-0.5, 1.3, 2.4))
    assert c1.distance_to(c1) == pytest.approx(0.0, abs=TOLERANCE)
    with pytest.raises(ValueError, match="dimensionality"):
        c1.distance_to(coord(C3_FLAT, (0.0,) * 4))


def test_vector_helpers() -> None:
    # coordinate_test.go TestCoordinate_diff / magnitude / unitVectorAt.
    assert diff((1.0, -3.0, 3.0), (-4.0, 5.0, 6.0)) == (5.0, -8.0, -3.0)
    assert magnitude((0.0, 0.0, 0.0)) == 0.0
    assert magnitude((1.0, -2.0, 3.0)) == pytest.approx(3.7416573867739413, abs=TOLERANCE)
    rng = random.Random(1)
    u, mag = unit_vector_at((1.0, 2.0, 3.0), (0.5, 0.6, 0.7), rng)
    assert u == pytest.approx(
        (0.18257418583505536, 0.511207720338155, 0.8398412548412546), abs=TOLERANCE
    )
    assert mag == pytest.approx(magnitude(diff((1.0, 2.0, 3.0), (0.5, 0.6, 0.7))))
    u, mag = unit_vector_at((1.0, 2.0, 3.0), (1.0, 2.0, 3.0), rng)
    assert magnitude(u) == pytest.approx(1.0, abs=TOLERANCE)
    assert mag == 0.0


def test_unit_vector_falls_back_to_first_axis() -> None:
    # Serf's last clause ("we can't hit without heroics"): a random vector that is
    # itself coincident.
    class Zero(random.Random):
        def random(self) -> float:
            return 0.5

    assert unit_vector_at((1.0, 1.0), (1.0, 1.0), Zero()) == ((1.0, 0.0), 0.0)


def test_client_update_moves_away_from_a_too_close_peer() -> None:
    # client_test.go TestClient_Update.
    client = VivaldiClient(C3, random.Random(1))
    assert client.coordinate.vec == (0.0, 0.0, 0.0)
    other = coord(C3, (0.0, 0.0, 0.001))
    c = client.update("node", other, 2.0 * 0.001)
    assert c.vec[2] < 0.0
    client.set_coordinate(replace(c, vec=(c.vec[0], c.vec[1], 99.0)))
    assert client.coordinate.vec[2] == pytest.approx(99.0)


@pytest.mark.parametrize("rtt", [float(1 << 62), -35.0, 11.0, 0.0, math.nan, math.inf])
def test_client_rejects_rtt_outside_range(rtt: float) -> None:
    # client_test.go TestClient_InvalidInPingValues (plus zero, NaN and Inf).
    client = VivaldiClient(C3, random.Random(1))
    other = coord(C3, (0.0, 0.0, 0.001))
    before = client.distance_to(other)
    with pytest.raises(RejectedSample, match="round trip time"):
        client.update("node", other, rtt)
    assert client.distance_to(other) == before
    assert client.stats.rejected == {"rtt": 1}
    assert client.peers_sampled == 0


def test_client_distance_to() -> None:
    # client_test.go TestClient_DistanceTo.
    client = VivaldiClient(C3_FLAT, random.Random(1))
    assert client.distance_to(coord(C3_FLAT, (0.0, 0.0, 12.345))) == pytest.approx(12.345)


def test_latency_filter_median_and_forget() -> None:
    # client_test.go TestClient_latencyFilter.
    client = VivaldiClient(CoordinateConfig(latency_filter_size=3), random.Random(1))
    table = [
        ("alice", 0.201, 0.201),
        ("alice", 0.200, 0.201),
        ("alice", 0.207, 0.201),
        ("alice", 1.9, 0.207),  # the glitch is median-ed out
        ("alice", 0.203, 0.207),
        ("alice", 0.199, 0.203),
        ("alice", 0.211, 0.203),
        ("bob", 0.310, 0.310),  # peers are not coupled
    ]
    for node, sample, median in table:
        assert client.latency_filter(node, sample) == pytest.approx(median, abs=TOLERANCE)
    client.forget("alice")
    assert client.latency_filter("alice", 0.888) == pytest.approx(0.888)


def test_latency_filter_keeps_a_bounded_number_of_peers() -> None:
    client = VivaldiClient(CoordinateConfig(max_peers=2), random.Random(1))
    client.latency_filter("a", 0.1)
    client.latency_filter("b", 0.2)
    client.latency_filter("a", 0.3)  # "a" is now the most recently sampled
    client.latency_filter("c", 0.4)  # so "b" goes
    assert client.peers_sampled == 2
    assert client.latency_filter("a", 0.5) == pytest.approx(0.3)
    assert client.latency_filter("b", 0.9) == pytest.approx(0.9)


def _with(c: Coordinate, index: int, value: float) -> Coordinate:
    vec = list(c.vec)
    vec[index] = value
    return replace(c, vec=tuple(vec))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_with(Coordinate.origin(C3), 0, math.nan), "invalid"),
        (_with(Coordinate.origin(C3), 2, math.inf), "invalid"),
        (Coordinate((0.0,) * 6, 1.5, 0.0, 1e-5), "dimensions"),
        (_with(Coordinate.origin(C3), 1, MAX_COMPONENT * 1.01), "from the origin"),
        (replace(Coordinate.origin(C3), error=1.6), "error"),
        (replace(Coordinate.origin(C3), error=-0.1), "error"),
        (replace(Coordinate.origin(C3), height=-1e-3), "height"),
        (replace(Coordinate.origin(C3), height=MAX_COMPONENT + 1), "height"),
        (replace(Coordinate.origin(C3), adjustment=-MAX_COMPONENT - 1), "adjustment"),
    ],
)
def test_client_rejects_bad_coordinates(bad: Coordinate, message: str) -> None:
    # client_test.go TestClient_NaN_Defense, plus the bounds on what the wire may carry.
    client = VivaldiClient(C3, random.Random(1))
    with pytest.raises(RejectedSample, match=message):
        client.update("node", bad, 0.25)
    with pytest.raises(RejectedSample, match=message):
        client.set_coordinate(bad)
    assert client.coordinate == Coordinate.origin(C3)
    assert client.stats.rejected == {"coordinate": 1}
    assert check_coordinate(bad, C3) is not None


def test_client_resets_a_poisoned_coordinate() -> None:
    client = VivaldiClient(C3, random.Random(1))
    client._coord = _with(client.coordinate, 0, math.nan)
    c = client.update("node", Coordinate.origin(C3), 0.25)
    assert c.is_valid()
    assert client.stats.resets == 1


# performance_test.go with phantom.go's truth matrices, Simulate and Evaluate.
Truth = list[list[float]]


def _truth(nodes: int, rtt: object) -> Truth:
    matrix = [[0.0] * nodes for _ in range(nodes)]
    for i in range(nodes):
        for j in range(i + 1, nodes):
            matrix[i][j] = matrix[j][i] = rtt(i, j)  # type: ignore[operator]
    return matrix


def line(nodes: int, spacing: float) -> Truth:
    return _truth(nodes, lambda i, j: (j - i) * spacing)


def grid(nodes: int, spacing: float) -> Truth:
    n = int(math.sqrt(nodes))
    return _truth(nodes, lambda i, j: math.hypot(j % n - i % n, j // n - i // n) * spacing)


def split(nodes: int, lan: float, wan: float) -> Truth:
    half = nodes // 2
    return _truth(nodes, lambda i, j: lan + (wan if (i <= half) != (j <= half) else 0.0))


def circle(nodes: int, radius: float) -> Truth:
    def rtt(i: int, j: int) -> float:
        if i == 0:
            return 2 * radius
        t1, t2 = 2 * math.pi * i / nodes, 2 * math.pi * j / nodes
        return math.hypot(math.cos(t2) - math.cos(t1), math.sin(t2) - math.sin(t1)) * radius

    return _truth(nodes, rtt)


def simulate(clients: list[VivaldiClient], truth: Truth, cycles: int) -> None:
    rng = random.Random(1)
    for _ in range(cycles):
        for i, client in enumerate(clients):
            j = rng.randrange(len(clients))
            if j != i:
                client.update(f"node_{j}", clients[j].coordinate, truth[i][j])


def evaluate(clients: list[VivaldiClient], truth: Truth) -> tuple[float, float]:
    errors = [
        abs(clients[i].distance_to(clients[j].coordinate) - truth[i][j]) / truth[i][j]
        for i in range(len(clients))
        for j in range(i + 1, len(clients))
    ]
    return sum(errors) / len(errors), max(errors)


# Serf's bounds (ErrorAvg, ErrorMax) for each topology, 1,000 cycles. Go's math/rand
# and Python's random draw different streams, so Serf's exact run cannot be replayed;
# its bounds get a margin of MARGIN (a wrong formula misses them by orders of magnitude).
MARGIN = 1.5


@pytest.mark.parametrize(
    ("nodes", "truth", "avg_bound", "max_bound"),
    [
        (10, line(10, 0.010), 0.0031, 0.0130),
        (25, grid(25, 0.010), 0.0016, 0.0230),
        (25, split(25, 0.001, 0.010), 0.000060, 0.00048),
    ],
    ids=["line", "grid", "split"],
)
def test_performance(nodes: int, truth: Truth, avg_bound: float, max_bound: float) -> None:
    config = CoordinateConfig()
    rng = random.Random(1)
    clients = [VivaldiClient(config, rng) for _ in range(nodes)]
    simulate(clients, truth, 1000)
    avg, worst = evaluate(clients, truth)
    assert avg <= avg_bound * MARGIN, (avg, worst)
    assert worst <= max_bound * MARGIN, (avg, worst)


def test_performance_height() -> None:
    # performance_test.go TestPerformance_Height: the node equidistant from all others
    # rises above their plane.
    radius = 0.100
    config = CoordinateConfig(dimensionality=2)
    rng = random.Random(1)
    clients = [VivaldiClient(config, rng) for _ in range(25)]
    truth = circle(25, radius)
    simulate(clients, truth, 1000)
    assert clients[0].coordinate.height >= 0.97 * radius
    assert all(c.coordinate.height <= 0.03 * radius * MARGIN for c in clients[1:])
    avg, worst = evaluate(clients, truth)
    assert avg <= 0.0028 * MARGIN, (avg, worst)
    assert worst <= 0.064 * MARGIN, (avg, worst)
