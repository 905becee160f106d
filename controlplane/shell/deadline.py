"""One loop timer that follows the next deadline of a pure core.

Each shell (the gossip runtime, the election and query drivers) drives a core that
says when it next has work (``next_deadline()``, in ``time.monotonic()`` seconds,
which the loop's clock counts too: asyncio's exactly, uvloop's in whole
milliseconds, so a timer may fire up to half a millisecond early, and the core then
finds nothing due and is armed again). `DeadlineTimer` keeps one asyncio timer at
that deadline: re-armed only when the deadline moves (either way: a deadline that
moved later must not wake an idle agent for nothing), none at all for ``inf``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class DeadlineTimer:
    """Calls ``callback`` once the armed deadline (monotonic time) has come."""

    __slots__ = ("_callback", "_handle", "at")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        # The deadline armed, inf when none.
        self.at = math.inf

    def arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if deadline == self.at:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.at = deadline
        if deadline != math.inf:
            self._handle = loop.call_at(deadline, self._fire)

    def when(self) -> float:
        """When the loop will call back (its timer's own time), inf when not armed."""
        return math.inf if self._handle is None else self._handle.when()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.at = math.inf

    def _fire(self) -> None:
        self._handle = None
        self.at = math.inf
        self._callback()
