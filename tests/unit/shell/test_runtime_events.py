"""The runtime hands listeners one event per run of same-type member changes."""

from __future__ import annotations

from controlplane.membership import (
    EventType,
    MemberEvent,
    MemberInfo,
    MemberStatus,
    SnapshotRecord,
    UserEvent,
)
from controlplane.shell.runtime import GossipRuntime
from tests.unit.membership.helpers import make


def info(name: str) -> MemberInfo:
    return MemberInfo(name, ("10.0.0.5", 7946), {}, MemberStatus.ALIVE, 1)


def event(type_: EventType, *names: str) -> MemberEvent:
    return MemberEvent(type_, tuple(info(name) for name in names))


def test_runs_of_one_type_reach_listeners_as_one_event_in_order():
    runtime = GossipRuntime(make())
    seen: list[object] = []
    runtime.subscribe(seen.append)
    user = UserEvent("deploy", b"", 3, False)
    runtime.apply(
        [
            event(EventType.MEMBER_JOIN, "a"),
            SnapshotRecord("alive: a 10.0.0.5 7946\n"),
            event(EventType.MEMBER_JOIN, "b", "c"),
            event(EventType.MEMBER_FAILED, "d"),
            user,
            event(EventType.MEMBER_JOIN, "e"),
        ]
    )
    assert seen == [
        event(EventType.MEMBER_JOIN, "a", "b", "c"),
        event(EventType.MEMBER_FAILED, "d"),
        user,
        event(EventType.MEMBER_JOIN, "e"),
    ]


async def test_the_timer_follows_the_deadline_later_as_well_as_earlier(monkeypatch):
    # An idle agent's CPU is its wake-ups: a timer left at a deadline that moved later
    # (an answered probe's timeout) would wake it for nothing.
    import asyncio

    runtime = GossipRuntime(make())
    loop = asyncio.get_running_loop()
    runtime._loop = loop
    deadline = [loop.time() + 0.05]
    monkeypatch.setattr(runtime.layer, "next_deadline", lambda: deadline[0])
    runtime._reschedule()
    assert runtime._timer is not None
    assert runtime._timer.when() == deadline[0]
    deadline[0] += 1.0
    runtime._reschedule()
    assert runtime._timer.when() == deadline[0]
    deadline[0] -= 0.5
    runtime._reschedule()
    assert runtime._timer.when() == deadline[0]
    runtime._timer.cancel()
