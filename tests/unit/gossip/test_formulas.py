"""Table tests of the pure formulas, with the cases of memberlist's own tests."""

from __future__ import annotations

import pytest

from controlplane.gossip.awareness import Awareness
from controlplane.gossip.formulas import (
    adaptive_probe_timeout,
    expected_confirmations,
    probe_suspect_after,
    push_pull_scale,
    remaining_suspicion_time,
    retransmit_limit,
    suspicion_probe_chance,
    suspicion_timeout,
)


# memberlist util_test.go TestSuspicionTimeout (timeout / 3 with SuspicionMult 3).
@pytest.mark.parametrize(
    ("n", "expected"),
    [(5, 1.0), (10, 1.0), (50, 1.698), (100, 2.0), (500, 2.698), (1000, 3.0)],
)
def test_suspicion_timeout(n: int, expected: float) -> None:
    assert suspicion_timeout(3, n, 1.0) / 3 == pytest.approx(expected, abs=1e-9)


# memberlist util_test.go TestRetransmitLimit.
@pytest.mark.parametrize(("n", "expected"), [(0, 0), (1, 3), (99, 6)])
def test_retransmit_limit(n: int, expected: int) -> None:
    assert retransmit_limit(3, n) == expected


# memberlist util_test.go TestPushPullScale.
@pytest.mark.parametrize(("low", "high", "multiple"), [(0, 32, 1), (33, 64, 2), (65, 128, 3)])
def test_push_pull_scale(low: int, high: int, multiple: int) -> None:
    for n in range(low, high + 1):
        assert push_pull_scale(1.0, n) == multiple


# memberlist suspicion_test.go TestSuspicion_remainingSuspicionTime.
@pytest.mark.parametrize(
    ("n", "k", "elapsed", "minimum", "maximum", "expected"),
    [
        (0, 3, 0.0, 2.0, 30.0, 30.0),
        (1, 3, 2.0, 2.0, 30.0, 14.0),
        (2, 3, 3.0, 2.0, 30.0, 4.810),
        (3, 3, 4.0, 2.0, 30.0, -2.0),
        (4, 3, 5.0, 2.0, 30.0, -3.0),
        (5, 3, 10.0, 2.0, 30.0, -8.0),
    ],
)
def test_remaining_suspicion_time(
    n: int, k: int, elapsed: float, minimum: float, maximum: float, expected: float
) -> None:
    assert remaining_suspicion_time(n, k, elapsed, minimum, maximum) == pytest.approx(
        expected, abs=1e-9
    )


# memberlist awareness_test.go TestAwareness: (delta, score, scaled 1s timeout).
AWARENESS_CASES = [
    (0, 0, 1.0),
    (-1, 0, 1.0),
    (-10, 0, 1.0),
    (1, 1, 2.0),
    (-1, 0, 1.0),
    (10, 7, 8.0),
    (-1, 6, 7.0),
    (-1, 5, 6.0),
    (-1, 4, 5.0),
    (-1, 3, 4.0),
    (-1, 2, 3.0),
    (-1, 1, 2.0),
    (-1, 0, 1.0),
    (-1, 0, 1.0),
]


def test_awareness_table() -> None:
    awareness = Awareness(8)
    for delta, score, timeout in AWARENESS_CASES:
        awareness.apply_delta(delta)
        assert awareness.score == score
        assert awareness.scale_timeout(1.0) == timeout


@pytest.mark.parametrize(("mult", "n", "expected"), [(4, 5, 2), (4, 3, 0), (4, 4, 2), (3, 2, 0)])
def test_expected_confirmations(mult: int, n: int, expected: int) -> None:
    assert expected_confirmations(mult, n) == expected


# (srtt, rttvar, floor, ceiling, health score) -> timeout.
@pytest.mark.parametrize(
    ("srtt", "rttvar", "floor", "ceiling", "score", "expected"),
    [
        (None, 0.0, 0.04, 0.5, 0, 0.5),  # nothing measured: memberlist's ProbeTimeout
        (None, 0.0, 0.04, 0.5, 2, 1.5),  # ... scaled by the health score
        (0.001, 0.0005, 0.04, 0.5, 0, 0.04),  # a loopback round trip: the floor
        (0.05, 0.01, 0.04, 0.5, 0, 0.09),  # srtt + 4 * rttvar
        (0.05, 0.01, 0.04, 0.5, 1, 0.18),  # ... doubled at health score 1
        (0.3, 0.1, 0.04, 0.5, 0, 0.5),  # never above ProbeTimeout
        (0.3, 0.1, 0.04, 0.5, 3, 2.0),  # ... except as the health score scales it
    ],
)
def test_adaptive_probe_timeout(
    srtt: float | None, rttvar: float, floor: float, ceiling: float, score: int, expected: float
) -> None:
    assert adaptive_probe_timeout(srtt, rttvar, floor, ceiling, score) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("timeout", "interval", "expected"),
    [(0.04, 1.0, 0.12), (0.2, 1.0, 0.6), (0.5, 1.0, 1.0), (0.08, 2.0, 0.24), (1.0, 2.0, 2.0)],
)
def test_probe_suspect_after(timeout: float, interval: float, expected: float) -> None:
    assert probe_suspect_after(timeout, interval) == pytest.approx(expected)


# (expected confirmations, members) -> chance that one who learns of a suspicion probes.
@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [(0, 3, 0.0), (2, 4, 1.0), (2, 5, 1.0), (2, 10, 0.75), (2, 50, 0.125), (4, 1002, 0.012)],
)
def test_suspicion_probe_chance(k: int, n: int, expected: float) -> None:
    assert suspicion_probe_chance(k, n) == pytest.approx(expected)
