"""The two de-duplication buffers of the layer: recent intents and recent user events.

* :class:`IntentBuffer` (Serf ``recentIntents``): a join or leave intent about a
  member we do not know yet is kept (newest per member) for
  ``recent_intent_timeout``, then applied when the member appears.
* :class:`EventBuffer` (Serf ``eventBuffer``): a ring of ``event_buffer_size``
  slots indexed by ``lamport_time % size``; each slot holds the events of one
  Lamport time. An event already in its slot, older than the ring, or older than
  the minimum event time is dropped, so every event is handled at most once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class IntentType(enum.Enum):
    JOIN = "join"
    LEAVE = "leave"


@dataclass(frozen=True, slots=True)
class Intent:
    type: IntentType
    lamport_time: int
    # ``now`` when the intent was buffered: drives its expiry.
    received: float


class IntentBuffer:
    """Newest intent per unknown member (serf.go upsertIntent / recentIntent / reapIntents)."""

    def __init__(self, limit: int = 65536) -> None:
        self._intents: dict[str, Intent] = {}
        # Bound on buffered intents, so hostile input cannot grow memory without limit.
        self._limit = limit

    def __len__(self) -> int:
        return len(self._intents)

    def upsert(self, node: str, type: IntentType, lamport_time: int, now: float) -> bool:
        """Keep the intent if it is newer than the buffered one; True when it was new."""
        current = self._intents.get(node)
        if current is None and len(self._intents) >= self._limit:
            return False
        if current is None or lamport_time > current.lamport_time:
            self._intents[node] = Intent(type, lamport_time, now)
            return True
        return False

    def recent(self, node: str, type: IntentType) -> int | None:
        """The Lamport time of the buffered intent of ``type`` about ``node``, if any."""
        intent = self._intents.get(node)
        if intent is not None and intent.type is type:
            return intent.lamport_time
        return None

    def discard(self, node: str) -> None:
        self._intents.pop(node, None)

    def reap(self, now: float, timeout: float) -> int:
        """Drop intents older than ``timeout``; returns how many were dropped."""
        doomed = [node for node, intent in self._intents.items() if now - intent.received > timeout]
        for node in doomed:
            del self._intents[node]
        return len(doomed)


@dataclass(frozen=True, slots=True)
class BufferedEvent:
    """A user event remembered for de-duplication and push-pull replay."""

    lamport_time: int
    name: str
    payload: bytes
    coalesce: bool


class EventAdmission(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    TOO_OLD = "too_old"
    BEFORE_MINIMUM = "before_minimum"


class EventBuffer:
    """Ring of recent user events keyed by Lamport time (serf.go handleUserEvent)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("event buffer size must be at least 1")
        self.size = size
        self._slots: list[tuple[int, list[BufferedEvent]] | None] = [None] * size
        # Events before this time are ignored: set on a join that ignores old events
        # (eventJoinIgnore) and after a restart from a snapshot (eventMinTime).
        self.min_time = 0

    def admit(self, event: BufferedEvent, clock_time: int) -> EventAdmission:
        """Record ``event`` unless it was seen or is too old; ``clock_time`` is the event clock."""
        ltime = event.lamport_time
        if ltime < self.min_time:
            return EventAdmission.BEFORE_MINIMUM
        if clock_time > self.size and ltime < clock_time - self.size:
            return EventAdmission.TOO_OLD
        index = ltime % self.size
        slot = self._slots[index]
        if slot is not None and slot[0] == ltime:
            for previous in slot[1]:
                # Serf compares name and payload only: the same event fired with another
                # coalesce flag is still the same event.
                if previous.name == event.name and previous.payload == event.payload:
                    return EventAdmission.DUPLICATE
            slot[1].append(event)
        else:
            self._slots[index] = (ltime, [event])
        return EventAdmission.NEW

    def raise_min_time(self, ltime: int) -> None:
        self.min_time = max(self.min_time, ltime)

    def events(self) -> list[BufferedEvent]:
        """Every remembered event, oldest Lamport time first (for push-pull)."""
        found = [slot for slot in self._slots if slot is not None]
        found.sort(key=lambda slot: slot[0])
        return [event for _ltime, events in found for event in events]
