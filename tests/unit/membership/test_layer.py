"""One Membership driven by hand-built datagrams: intents, stale intents, events, state."""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.membership import (
    EventType,
    MemberEvent,
    MemberStatus,
    SnapshotRecord,
    SnapshotState,
    UserEvent,
)
from controlplane.membership.buffers import BufferedEvent
from controlplane.membership.messages import (
    decode_state,
    encode_join_intent,
    encode_leave_intent,
    encode_state,
    encode_user_event,
)
from tests.unit.membership.helpers import alive, dead, make, receive, user


def member_events(effects: Sequence[object]) -> list[tuple[EventType, list[str]]]:
    return [(e.type, [m.name for m in e.members]) for e in effects if isinstance(e, MemberEvent)]


def test_join_leave_failed_statuses_and_events():
    layer = make()
    assert member_events(receive(layer, alive("b"), alive("c"))) == [
        (EventType.MEMBER_JOIN, ["b"]),
        (EventType.MEMBER_JOIN, ["c"]),
    ]
    # b announces its leave, then its core leaves: left, never failed.
    receive(layer, user(encode_leave_intent("b", 5, False)))
    assert layer.member("b").status is MemberStatus.LEAVING
    assert member_events(receive(layer, dead("b", 1, "b"))) == [(EventType.MEMBER_LEAVE, ["b"])]
    assert layer.member("b").status is MemberStatus.LEFT
    # c is declared dead by someone else: failed.
    assert member_events(receive(layer, dead("c", 1, "x"))) == [(EventType.MEMBER_FAILED, ["c"])]
    assert layer.lamport_time == 6


def test_graceful_core_leave_without_the_intent_is_still_a_leave():
    layer = make()
    receive(layer, alive("b"))
    assert member_events(receive(layer, dead("b", 1, "b"))) == [(EventType.MEMBER_LEAVE, ["b"])]


def test_stale_join_intent_cannot_undo_a_newer_leave():
    layer = make()
    receive(layer, alive("b"))
    receive(layer, user(encode_leave_intent("b", 10, False)))
    receive(layer, user(encode_join_intent("b", 7)))
    assert layer.member("b").status is MemberStatus.LEAVING
    receive(layer, dead("b", 1, "x"))
    assert layer.member("b").status is MemberStatus.LEFT
    # A newer join would have restored it while leaving (serf handleNodeJoinIntent).
    receive(layer, alive("c"))
    receive(layer, user(encode_leave_intent("c", 3, False)))
    receive(layer, user(encode_join_intent("c", 4)))
    assert layer.member("c").status is MemberStatus.ALIVE


def test_intent_before_the_member_is_buffered_and_applied():
    layer = make()
    receive(layer, user(encode_leave_intent("b", 4, False)))
    receive(layer, alive("b"))
    assert layer.member("b").status is MemberStatus.LEAVING


def test_leave_intent_about_ourselves_is_refuted_with_a_newer_join():
    layer = make()
    receive(layer, alive("b"))
    receive(layer, user(encode_leave_intent("a", 20, False)))
    assert layer.local_member().status is MemberStatus.ALIVE
    assert layer.lamport_time > 20
    state = decode_state(layer.local_state(False))
    times = {record.node: record.lamport_time for record in state.status_times}
    assert times["a"] == 21


def test_user_event_delivered_once_and_rebroadcast_once():
    layer = make()
    raw = encode_user_event(BufferedEvent(4, "deploy", b"v2", False))
    effects = receive(layer, user(raw), user(raw))
    assert [e for e in effects if isinstance(e, UserEvent)] == [
        UserEvent("deploy", b"v2", 4, False)
    ]
    assert not [e for e in receive(layer, user(raw), now=2.0) if isinstance(e, UserEvent)]
    assert layer.stats.user_events_delivered == 1
    assert layer.stats.user_events_duplicate == 2
    assert layer.stats.rebroadcasts == 1
    assert layer.event_time == 5


def test_fired_event_is_delivered_locally_and_recorded_in_the_snapshot():
    layer = make()
    ltime, effects = layer.fire_user_event("deploy", b"v1", False, now=1.0)
    assert UserEvent("deploy", b"v1", ltime, False) in effects
    assert SnapshotRecord(f"event-clock: {ltime}\n") in effects


def test_push_pull_state_merges_clocks_tombstones_and_events():
    layer = make()
    receive(layer, alive("b"))
    state = encode_state(
        lamport_time=50,
        status_times={"b": 30, "z": 12},
        left_members=["b"],
        event_time=9,
        events=[BufferedEvent(8, "deploy", b"v", False)],
    )
    layer.merge_remote_state(state, False)
    effects = receive(layer)  # any entry point handles the deferred state
    assert layer.lamport_time >= 50
    assert layer.event_time >= 9
    assert layer.member("b").status is MemberStatus.LEAVING
    assert UserEvent("deploy", b"v", 8, False) in effects


def test_snapshot_restores_clocks_and_the_minimum_event_time():
    assert make().event_time == 1  # serf.go Create: clocks start at 1
    layer = make(snapshot=SnapshotState(lamport_time=7, event_time=11))
    assert layer.lamport_time == 8
    assert layer.event_time == 12
    old = encode_user_event(BufferedEvent(11, "deploy", b"old", False))
    new = encode_user_event(BufferedEvent(12, "deploy", b"new", False))
    effects = receive(layer, user(old), user(new))
    assert [e.payload for e in effects if isinstance(e, UserEvent)] == [b"new"]


def test_update_tags_emits_member_update_and_gossips():
    layer = make()
    effects = layer.update_tags({"role": "db", "zone": "a"}, (), now=1.0)
    assert member_events(effects) == [(EventType.MEMBER_UPDATE, ["a"])]
    assert layer.local_member().tags == {"role": "db", "zone": "a"}
    layer.update_tags({}, ["zone", "missing"], now=2.0)
    assert layer.local_member().tags == {"role": "db"}


def test_leave_alone_finishes_after_the_propagate_delay():
    layer = make()
    layer.leave(now=10.0)
    assert layer.local_member().status is MemberStatus.LEAVING
    assert not layer.leave_done(10.5)
    assert layer.next_deadline() <= 11.0
    assert layer.leave_done(11.0)
    assert layer.local_member().status is MemberStatus.LEFT


def test_garbage_broadcasts_are_dropped_not_raised():
    layer = make()
    receive(layer, user(b"\xff\xff\xff"), user(b""), user(encode_join_intent("bad name", 3)))
    assert sum(layer.stats.dropped.values()) == 3


def test_a_serf_state_with_more_entries_than_members_allowed_is_dropped():
    import random

    from controlplane.gossip import GossipConfig
    from controlplane.membership import Membership, MembershipConfig

    layer = Membership(
        GossipConfig.lan(max_nodes=10),
        MembershipConfig(),
        "a",
        ("10.0.0.1", 7946),
        rng=random.Random(1),
        now=0.0,
    )
    too_many = encode_state(3, {f"n{i}": 5 for i in range(11)}, [], 1, [])
    layer.merge_remote_state(too_many, False)
    layer.tick(1.0)
    assert layer.stats.dropped["state_too_large"] == 1
    assert layer.lamport_time == 1
    fits = encode_state(3, {f"n{i}": 5 for i in range(10)}, [], 1, [])
    layer.merge_remote_state(fits, False)
    layer.tick(1.0)
    assert layer.lamport_time > 1
