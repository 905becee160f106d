"""Lamport clocks (``serf/lamport.go``): a counter that orders intents and user events.

``time`` is the next value to use; ``increment`` returns the new value; ``witness``
moves the clock past a time seen from elsewhere so our next stamp is newer.
"""

from __future__ import annotations

# Times travel as uint64 on the wire; saturate instead of overflowing.
MAX_LAMPORT_TIME = 2**64 - 1


class LamportClock:
    """A thread-free Lamport clock; Serf starts its clocks at 1 (serf.go Create)."""

    __slots__ = ("_time",)

    def __init__(self, start: int = 0) -> None:
        self._time = max(0, min(start, MAX_LAMPORT_TIME))

    def time(self) -> int:
        return self._time

    def increment(self) -> int:
        if self._time < MAX_LAMPORT_TIME:
            self._time += 1
        return self._time

    def witness(self, seen: int) -> None:
        """After seeing ``seen``, the clock is at least ``seen + 1`` (lamport.go Witness)."""
        if seen >= self._time:
            self._time = min(seen + 1, MAX_LAMPORT_TIME)
