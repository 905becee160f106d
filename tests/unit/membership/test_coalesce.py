"""Member and user event coalescing (serf/coalesce_member.go, coalesce_user.go)."""

from __future__ import annotations

from controlplane.membership import EventType, MemberEvent, MemberInfo, MemberStatus, UserEvent
from controlplane.membership.coalesce import MemberCoalescer, UserCoalescer


def info(name: str, status: MemberStatus = MemberStatus.ALIVE) -> MemberInfo:
    return MemberInfo(name, ("10.0.0.1", 7946), {}, status, 1)


def join(name: str) -> MemberEvent:
    return MemberEvent(EventType.MEMBER_JOIN, (info(name),))


def test_burst_of_joins_in_one_period_gives_one_event_with_every_member():
    coalescer = MemberCoalescer(period=5.0, quiescent=1.0)
    for index in range(5):
        coalescer.add(join(f"n{index}"), now=0.1 * index)
    assert coalescer.flush(1.3) == []  # quiescent timer not yet up (last at 0.4)
    assert coalescer.deadline() == 1.4
    events = coalescer.flush(1.4)
    assert len(events) == 1
    assert events[0].type is EventType.MEMBER_JOIN
    assert [m.name for m in events[0].members] == [f"n{i}" for i in range(5)]
    assert coalescer.flush(10.0) == []


def test_coalesce_period_bounds_a_window_that_never_goes_quiet():
    coalescer = MemberCoalescer(period=2.0, quiescent=1.0)
    now = 0.0
    coalescer.add(join("a"), now)
    while now < 1.9:
        now += 0.5
        coalescer.add(join("b"), now)
    assert coalescer.deadline() == 2.0
    assert len(coalescer.flush(2.0)) == 1


def test_quiescent_period_ends_the_window_early():
    coalescer = MemberCoalescer(period=10.0, quiescent=2.0)
    coalescer.add(join("a"), 0.0)
    assert coalescer.flush(1.9) == []
    assert len(coalescer.flush(2.0)) == 1


def test_update_then_leave_of_one_member_collapses_to_the_last():
    coalescer = MemberCoalescer(period=5.0, quiescent=5.0)
    coalescer.add(MemberEvent(EventType.MEMBER_UPDATE, (info("a"),)), 0.0)
    coalescer.add(MemberEvent(EventType.MEMBER_LEAVE, (info("a", MemberStatus.LEFT),)), 1.0)
    coalescer.add(join("b"), 1.0)
    events = coalescer.flush(6.0)
    assert [(e.type, [m.name for m in e.members]) for e in events] == [
        (EventType.MEMBER_LEAVE, ["a"]),
        (EventType.MEMBER_JOIN, ["b"]),
    ]


def test_repeated_type_is_suppressed_except_updates():
    coalescer = MemberCoalescer(period=1.0, quiescent=1.0)
    coalescer.add(join("a"), 0.0)
    assert len(coalescer.flush(1.0)) == 1
    coalescer.add(join("a"), 2.0)
    assert coalescer.flush(3.0) == []  # the same join again: nothing new
    update = MemberEvent(EventType.MEMBER_UPDATE, (info("a"),))
    coalescer.add(update, 4.0)
    assert coalescer.flush(5.0) == [update]
    coalescer.add(update, 6.0)
    assert coalescer.flush(7.0) == [update]  # updates always go out


def user(name: str, ltime: int, coalesce: bool = True) -> UserEvent:
    return UserEvent(name, f"{name}@{ltime}".encode(), ltime, coalesce)


def test_user_coalescer_keeps_the_newest_per_name():
    coalescer = UserCoalescer(period=5.0, quiescent=5.0)
    assert coalescer.add(user("deploy", 3), 0.0) == []
    assert coalescer.add(user("deploy", 7), 0.1) == []
    assert coalescer.add(user("deploy", 5), 0.2) == []  # older than the kept one
    assert coalescer.add(user("restart", 4), 0.3) == []
    same_time = UserEvent("restart", b"other", 4, True)
    assert coalescer.add(same_time, 0.4) == []  # same time: both kept
    assert coalescer.flush(1.0) == []
    assert coalescer.flush(5.0) == [user("deploy", 7), user("restart", 4), same_time]
    assert len(coalescer) == 0


def test_user_coalescer_passes_non_coalescing_events_through():
    coalescer = UserCoalescer(period=5.0, quiescent=5.0)
    plain = user("deploy", 1, coalesce=False)
    assert coalescer.add(plain, 0.0) == [plain]
    assert coalescer.deadline() == float("inf")
