"""The push-pull state of the layer above gossip comes out of the core as data: a
``MergeRemoteState`` effect after the exchange's member effects, on a join and on a
periodic push-pull alike; the membership layer consumes it and merges the state."""

from __future__ import annotations

import random
from collections.abc import Sequence

from controlplane.gossip import (
    GossipConfig,
    GossipNode,
    MemberJoined,
    MergeRemoteState,
    StartPushPull,
)
from controlplane.membership import EventType, MemberEvent, Membership, MembershipConfig, UserEvent

A = ("10.0.0.1", 7946)
B = ("10.0.0.2", 7946)


def node(name: str, address: tuple[str, int], asked: list[tuple[str, bool]]) -> GossipNode:
    def user_state(join: bool) -> bytes:
        asked.append((name, join))
        return f"state of {name}, join={join}".encode()

    return GossipNode(
        GossipConfig.lan(),
        name,
        address,
        rng=random.Random(name.encode()[0]),
        now=0.0,
        user_state=user_state,
    )


def remote_states(effects: Sequence[object]) -> list[MergeRemoteState]:
    return [e for e in effects if isinstance(e, MergeRemoteState)]


def test_a_join_push_pull_reports_each_peers_state_after_its_members() -> None:
    asked: list[tuple[str, bool]] = []
    a, b = node("a", A, asked), node("b", B, asked)
    (start,) = a.join([B], 0.0)
    assert isinstance(start, StartPushPull)
    assert start.join
    assert asked == [("a", True)]

    response, served = b.handle_push_pull(A, start.request, 0.0)
    assert remote_states(served) == [MergeRemoteState(b"state of a, join=True", True)]
    # memberlist merges the member records first, then the remote state.
    assert isinstance(served[0], MemberJoined)
    assert served[-1] == remote_states(served)[0]
    assert asked[-1] == ("b", False)

    answered = a.push_pull_response(B, response, 0.0)
    assert remote_states(answered) == [MergeRemoteState(b"state of b, join=False", False)]
    assert isinstance(answered[0], MemberJoined)
    assert isinstance(answered[-1], MergeRemoteState)


def test_a_periodic_push_pull_reports_the_peers_state() -> None:
    asked: list[tuple[str, bool]] = []
    a, b = node("a", A, asked), node("b", B, asked)
    (start,) = a.join([B], 0.0)
    response, _ = b.handle_push_pull(A, start.request, 0.0)
    a.push_pull_response(B, response, 0.0)
    asked.clear()

    now = a.config.push_pull_interval * 2
    pulls = [e for e in a.tick(now) if isinstance(e, StartPushPull)]
    assert len(pulls) == 1
    assert not pulls[0].join
    assert asked == [("a", False)]
    response, served = b.handle_push_pull(A, pulls[0].request, now)
    assert remote_states(served) == [MergeRemoteState(b"state of a, join=False", False)]
    answered = a.push_pull_response(B, response, now)
    assert remote_states(answered) == [MergeRemoteState(b"state of b, join=False", False)]


def test_a_chunked_merge_reports_the_state_once_every_record_is_merged() -> None:
    asked: list[tuple[str, bool]] = []
    a, b = node("a", A, asked), node("b", B, asked)
    (start,) = a.join([B], 0.0)
    job = b.open_push_pull(start.request)
    seen: list[object] = []
    while not job.done:
        effects = b.merge_some(job, 0.0, 1)
        if not job.done:
            assert remote_states(effects) == []
        seen.extend(effects)
    assert remote_states(seen) == [MergeRemoteState(b"state of a, join=True", True)]
    assert seen[-1] == remote_states(seen)[0]


def test_no_state_no_effect() -> None:
    a = GossipNode(GossipConfig.lan(), "a", A, rng=random.Random(1), now=0.0)
    b = GossipNode(GossipConfig.lan(), "b", B, rng=random.Random(2), now=0.0)
    (start,) = a.join([B], 0.0)
    response, served = b.handle_push_pull(A, start.request, 0.0)
    assert remote_states(served) == []
    assert remote_states(a.push_pull_response(B, response, 0.0)) == []


# ---------------------------------------------------------------------------- the layer


def layer(name: str, address: tuple[str, int]) -> Membership:
    return Membership(
        GossipConfig.lan(),
        MembershipConfig(),
        name,
        address,
        rng=random.Random(name.encode()[0]),
        now=0.0,
    )


def user_events(effects: Sequence[object]) -> list[UserEvent]:
    return [e for e in effects if isinstance(e, UserEvent)]


def test_the_layer_merges_the_state_of_a_join_it_serves() -> None:
    a, b = layer("a", A), layer("b", B)
    for _ in range(40):
        a.fire_user_event("tick", b"", False, 0.0)
    time, _ = a.fire_user_event("deploy", b"v1", False, 0.0)
    (start,) = [e for e in a.join([B], 0.0) if isinstance(e, StartPushPull)]
    _, effects = b.handle_push_pull(A, start.request, 0.0)
    # The core's effect is consumed, not passed on.
    assert remote_states(effects) == []
    assert UserEvent("deploy", b"v1", time, False) in user_events(effects)
    assert b.lamport_time >= a.lamport_time - 1
    assert b.event_time > time
    # Member events come first, as the core merges the records first.
    joined = [i for i, e in enumerate(effects) if isinstance(e, MemberEvent)]
    assert effects[joined[0]].type is EventType.MEMBER_JOIN
    assert joined[0] < effects.index(UserEvent("deploy", b"v1", time, False))


def test_the_layer_merges_a_chunked_state_a_slice_at_a_time() -> None:
    a, b = layer("a", A), layer("b", B)
    times = [a.fire_user_event(f"e{i}", b"", False, 0.0)[0] for i in range(10)]
    (start,) = [e for e in a.join([B], 0.0) if isinstance(e, StartPushPull)]
    job = b.open_push_pull(start.request)
    slices: list[Sequence[object]] = []
    while not job.done:
        slices.append(b.merge_some(job, 0.0, 1))
    received = [e.lamport_time for s in slices for e in user_events(s)]
    assert received == times
    assert max(len(user_events(s)) for s in slices) == 1  # one event per slice of 1 unit


def test_a_joiner_that_asked_for_no_replay_ignores_old_events_of_the_answer() -> None:
    for replay in (False, True):
        a, b = layer("a", A), layer("b", B)
        b.fire_user_event("old", b"", False, 0.0)
        (start,) = [e for e in a.join([B], 0.0, replay=replay) if isinstance(e, StartPushPull)]
        response, _ = b.handle_push_pull(A, start.request, 0.0)
        effects = a.push_pull_response(B, response, 0.0)
        assert [e.name for e in user_events(effects)] == ([] if not replay else ["old"])
        assert b.member("a") is not None
        assert a.member("b") is not None
