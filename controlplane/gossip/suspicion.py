"""Lifeguard suspicion timer: a deadline that shrinks as independent peers confirm it.

Sans-IO: the timer does not fire by itself; it reports its deadline and the
owner acts when ``now`` passes it (memberlist suspicion.go).
"""

from __future__ import annotations

import math

from controlplane.gossip.formulas import remaining_suspicion_time


class Suspicion:
    """Suspicion of one member raised at ``start`` by ``origin``."""

    __slots__ = (
        "_confirmations",
        "check_at",
        "checked",
        "deadline",
        "expected",
        "incarnation",
        "maximum",
        "minimum",
        "start",
    )

    def __init__(
        self,
        origin: str,
        expected: int,
        minimum: float,
        maximum: float,
        start: float,
        incarnation: int,
    ) -> None:
        self.expected = expected
        self.minimum = minimum
        self.maximum = maximum
        self.start = start
        self.incarnation = incarnation
        # The originator does not count as a confirmation but must not be counted later either.
        self._confirmations: set[str] = {origin}
        # With no confirmations expected, the minimum applies at once (memberlist newSuspicion).
        self.deadline = start + (maximum if expected > 0 else minimum)
        # When and whether the suspect is pinged once more before the deadline (the owner
        # sets check_at; never by default).
        self.check_at = math.inf
        self.checked = False

    @property
    def confirmations(self) -> int:
        return len(self._confirmations) - 1

    def confirm(self, sender: str) -> bool:
        """Count ``sender``'s confirmation; True when it was new information.

        The deadline moves earlier (never before ``start + minimum``'s rounding).
        """
        if self.confirmations >= self.expected:
            return False
        if sender in self._confirmations:
            return False
        self._confirmations.add(sender)
        remaining = remaining_suspicion_time(
            self.confirmations, self.expected, 0.0, self.minimum, self.maximum
        )
        self.deadline = self.start + remaining
        return True
