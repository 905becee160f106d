"""Suspicion timer with Lifeguard confirmations

Cases from memberlist suspicion_test.go TestSuspicion_Timer.
"""

from __future__ import annotations

import pytest

from controlplane.gossip.suspicion import Suspicion

K = 3
MINIMUM = 0.5
MAXIMUM = 2.0


@pytest.mark.parametrize(
    ("confirmations", "expected_count", "expected_timeout"),
    [
        ([], 0, MAXIMUM),
        ([("me", False), ("foo", True)], 1, 1.25),
        ([("me", False), ("foo", True), ("foo", False), ("foo", False)], 1, 1.25),
        ([("me", False), ("foo", True), ("bar", True)], 2, 0.81),
        ([("me", False), ("foo", True), ("bar", True), ("baz", True)], 3, MINIMUM),
        (
            [("me", False), ("foo", True), ("bar", True), ("baz", True), ("zoo", False)],
            3,
            MINIMUM,
        ),
    ],
)
def test_timer(confirmations, expected_count, expected_timeout):
    start = 100.0
    suspicion = Suspicion("me", K, MINIMUM, MAXIMUM, start, incarnation=1)
    for sender, new_information in confirmations:
        assert suspicion.confirm(sender) is new_information
    assert suspicion.confirmations == expected_count
    # memberlist's table says 810 ms where the formula gives 811 ms; its timer test
    # allows 25 ms of slack, we allow 2 ms.
    assert suspicion.deadline - start == pytest.approx(expected_timeout, abs=0.002)


def test_no_expected_confirmations_uses_minimum():
    suspicion = Suspicion("me", 0, MINIMUM, MAXIMUM, 10.0, incarnation=1)
    assert suspicion.deadline == pytest.approx(10.0 + MINIMUM)
    assert suspicion.confirm("foo") is False
