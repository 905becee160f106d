"""Lamport clock rules (serf/lamport.go) and the intent and event buffers."""

from __future__ import annotations

from controlplane.membership import LamportClock
from controlplane.membership.buffers import (
    BufferedEvent,
    EventAdmission,
    EventBuffer,
    IntentBuffer,
    IntentType,
)


def test_clock_increments_and_witnesses():
    clock = LamportClock()
    assert clock.time() == 0
    assert clock.increment() == 1
    clock.witness(0)  # older: no change
    assert clock.time() == 1
    clock.witness(1)  # equal: move past it
    assert clock.time() == 2
    clock.witness(41)
    assert clock.time() == 42
    clock.witness(10)
    assert clock.time() == 42


def test_clock_saturates_at_uint64():
    clock = LamportClock(2**64 - 1)
    assert clock.increment() == 2**64 - 1
    clock.witness(2**64 - 1)
    assert clock.time() == 2**64 - 1


def event(ltime: int, name: str = "deploy", payload: bytes = b"x") -> BufferedEvent:
    return BufferedEvent(ltime, name, payload, False)


def test_event_buffer_drops_duplicates_keeps_distinct_events_of_one_time():
    buffer = EventBuffer(4)
    assert buffer.admit(event(3), 4) is EventAdmission.NEW
    assert buffer.admit(event(3), 4) is EventAdmission.DUPLICATE
    # Same time, other payload or name: a different event.
    assert buffer.admit(event(3, payload=b"y"), 4) is EventAdmission.NEW
    assert buffer.admit(event(3, name="other"), 4) is EventAdmission.NEW
    # The coalesce flag is not part of the identity (serf userEvent.Equals).
    assert buffer.admit(BufferedEvent(3, "deploy", b"x", True), 4) is EventAdmission.DUPLICATE
    assert [e.lamport_time for e in buffer.events()] == [3, 3, 3]


def test_event_buffer_refuses_events_older_than_the_ring_and_the_minimum():
    buffer = EventBuffer(4)
    assert buffer.admit(event(5), 10) is EventAdmission.TOO_OLD  # 5 < 10 - 4
    assert buffer.admit(event(6), 10) is EventAdmission.NEW
    # A slot reused by a newer time forgets the older event.
    assert buffer.admit(event(10), 11) is EventAdmission.NEW
    assert [e.lamport_time for e in buffer.events()] == [10]
    buffer.raise_min_time(20)
    buffer.raise_min_time(15)  # never lowered
    assert buffer.min_time == 20
    assert buffer.admit(event(19), 21) is EventAdmission.BEFORE_MINIMUM
    assert buffer.admit(event(20), 21) is EventAdmission.NEW


def test_intent_buffer_keeps_the_newest_intent_per_node_and_expires():
    intents = IntentBuffer()
    assert intents.upsert("b", IntentType.JOIN, 5, now=0.0)
    assert not intents.upsert("b", IntentType.LEAVE, 5, now=1.0)  # not newer
    assert intents.recent("b", IntentType.JOIN) == 5
    assert intents.upsert("b", IntentType.LEAVE, 6, now=2.0)
    assert intents.recent("b", IntentType.JOIN) is None
    assert intents.recent("b", IntentType.LEAVE) == 6
    assert intents.reap(now=302.0, timeout=300.0) == 0
    assert intents.reap(now=302.1, timeout=300.0) == 1
    assert len(intents) == 0


def test_intent_buffer_is_bounded():
    intents = IntentBuffer(limit=2)
    assert intents.upsert("a", IntentType.JOIN, 1, 0.0)
    assert intents.upsert("b", IntentType.JOIN, 1, 0.0)
    assert not intents.upsert("c", IntentType.JOIN, 1, 0.0)
    assert intents.upsert("a", IntentType.JOIN, 2, 0.0)  # updates still apply
