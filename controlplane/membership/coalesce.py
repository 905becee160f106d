"""Event coalescing (``serf/coalesce*.go``), driven by ``now`` instead of goroutines.

A coalescer opens a window at the first event it takes; the window flushes at
``start + coalesce_period`` or ``last event + quiescent_period``, whichever
comes first (coalesce.go coalesceLoop).

* :class:`MemberCoalescer` (coalesce_member.go): keeps the last event type per
  member; a flush emits one event per type listing every member, and skips a
  member whose type equals the one last emitted for it (except updates).
* :class:`UserCoalescer` (coalesce_user.go): events fired with ``coalesce=True``
  keep only the newest Lamport time per name (all events of that time);
  others pass through at once.
"""

from __future__ import annotations

import math

from controlplane.membership.events import EventType, MemberEvent, MemberInfo, UserEvent


class _Window:
    """The quantum and quiescent timers of one coalescer."""

    def __init__(self, period: float, quiescent: float) -> None:
        self.period = period
        self.quiescent = quiescent
        self._start: float | None = None
        self._last = 0.0

    def touch(self, now: float) -> None:
        if self._start is None:
            self._start = now
        self._last = now

    def deadline(self) -> float:
        if self._start is None:
            return math.inf
        return min(self._start + self.period, self._last + self.quiescent)

    def due(self, now: float) -> bool:
        return now >= self.deadline()

    def reset(self) -> None:
        self._start = None


class MemberCoalescer:
    """Merges member events within a window into one event per type."""

    def __init__(self, period: float, quiescent: float) -> None:
        self._window = _Window(period, quiescent)
        self._latest: dict[str, tuple[EventType, MemberInfo]] = {}
        # The type last emitted per member, across windows (coalesce_member.go lastEvents).
        self._last_emitted: dict[str, EventType] = {}

    def __len__(self) -> int:
        return len(self._latest)

    def add(self, event: MemberEvent, now: float) -> None:
        self._window.touch(now)
        for member in event.members:
            # Re-inserting moves the member to the end: members flush in order of last change.
            self._latest.pop(member.name, None)
            self._latest[member.name] = (event.type, member)

    def deadline(self) -> float:
        return self._window.deadline()

    def flush(self, now: float, *, force: bool = False) -> list[MemberEvent]:
        """The coalesced events when the window is due (or ``force``), else nothing."""
        if not self._latest or not (force or self._window.due(now)):
            return []
        grouped: dict[EventType, list[MemberInfo]] = {}
        for name, (type_, member) in self._latest.items():
            previous = self._last_emitted.get(name)
            if previous is type_ and type_ is not EventType.MEMBER_UPDATE:
                continue
            if type_ is EventType.MEMBER_REAP:
                # A reaped member is gone: forget it so the map stays bounded.
                self._last_emitted.pop(name, None)
            else:
                self._last_emitted[name] = type_
            grouped.setdefault(type_, []).append(member)
        self._latest.clear()
        self._window.reset()
        return [MemberEvent(type_, tuple(members)) for type_, members in grouped.items()]


class UserCoalescer:
    """Keeps the newest coalescable user event per name within a window."""

    def __init__(self, period: float, quiescent: float) -> None:
        self._window = _Window(period, quiescent)
        self._latest: dict[str, tuple[int, list[UserEvent]]] = {}

    def __len__(self) -> int:
        return sum(len(events) for _ltime, events in self._latest.values())

    def add(self, event: UserEvent, now: float) -> list[UserEvent]:
        """Take an event; returns it at once when it is not coalescable."""
        if not event.coalesce:
            return [event]
        self._window.touch(now)
        current = self._latest.get(event.name)
        if current is None or current[0] < event.lamport_time:
            self._latest[event.name] = (event.lamport_time, [event])
        elif current[0] == event.lamport_time:
            current[1].append(event)
        return []

    def deadline(self) -> float:
        return self._window.deadline()

    def flush(self, now: float, *, force: bool = False) -> list[UserEvent]:
        if not self._latest or not (force or self._window.due(now)):
            return []
        events = [event for _ltime, batch in self._latest.values() for event in batch]
        self._latest.clear()
        self._window.reset()
        return events
