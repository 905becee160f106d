"""Lifeguard local health awareness: a score that slows our own probing when we are unhealthy.

A member that misses acks it should have received, or hears itself suspected,
is more likely the slow party than its peers. Its score rises, and probe
interval and timeouts are multiplied by ``score + 1`` so a struggling member
accuses others less eagerly (memberlist awareness.go).
"""

from __future__ import annotations


class Awareness:
    """Health score in ``[0, max_multiplier - 1]``; 0 is healthy."""

    __slots__ = ("_max", "_score")

    def __init__(self, max_multiplier: int) -> None:
        self._max = max_multiplier
        self._score = 0

    def apply_delta(self, delta: int) -> None:
        self._score = min(max(self._score + delta, 0), self._max - 1)

    @property
    def score(self) -> int:
        return self._score

    def scale_timeout(self, timeout: float) -> float:
        return timeout * (self._score + 1)
