"""Lamport clocks (``serf/lamport.go``): a counter that orders intents and user events.

``time`` is the next value to use; ``increment`` returns the new value; ``witness``
moves the clock past a time seen from elsewhere so our next stamp is newer.
"""

from __future__ import annotations

# Times travel as uint64 on the wire; saturate instead of overflowing.
MAX_LAMPORT_TIME = 2**64 - 1
# Serf witnesses any time it hears, so one forged LeaveIntent at 2**64 - 1 wins for
# good: no join intent can be newer. A time from a gossip message (an intent, a user
# event, an entry of a push-pull state) is believed only this far above the local
# clock. The local clock follows every intent heard and a push-pull state at least
# every PushPullInterval; a legitimate time this far ahead means 65,536 intents (or
# user events) were missed between two exchanges.
MAX_LAMPORT_STEP = 2**16
# The clock a push-pull state declares may be further ahead: a new agent starts at 1
# and catches up with the cluster's clock in its first exchange. 2**32 intents is more
# than a cluster issues in its life (a join or leave every 0.1 s for 13 years); an
# attacker needs 2**32 accepted exchanges to drive a clock to the ceiling.
MAX_LAMPORT_CATCH_UP = 2**32


def within_reach(seen: int, local: int, step: int = MAX_LAMPORT_STEP) -> bool:
    """``seen`` (from the network) is at most ``step`` above the local clock ``local``."""
    return 0 <= seen <= local + step


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
