"""Lamport times from the network are believed only near the local clock, and the
snapshot writer cannot be made to forge a record (issue 13, attacks 4 and 5)."""

from __future__ import annotations

import pytest

from controlplane.membership import MemberStatus, SnapshotState, parse_snapshot
from controlplane.membership.buffers import BufferedEvent
from controlplane.membership.lamport import (
    MAX_LAMPORT_CATCH_UP,
    MAX_LAMPORT_STEP,
    within_reach,
)
from controlplane.membership.messages import (
    encode_join_intent,
    encode_leave_intent,
    encode_state,
    encode_user_event,
)
from controlplane.membership.snapshot import SnapshotWriter, writable
from tests.unit.membership.helpers import alive, make, receive, user


@pytest.mark.parametrize(
    ("seen", "local", "ok"),
    [
        (0, 1, True),
        (1 + MAX_LAMPORT_STEP, 1, True),
        (2 + MAX_LAMPORT_STEP, 1, False),
        (2**64 - 1, 1, False),
        (2**64 - 1, 2**64 - 1 - MAX_LAMPORT_STEP, True),
    ],
)
def test_within_reach(seen: int, local: int, ok: bool) -> None:
    assert within_reach(seen, local) is ok


def test_catch_up_allows_a_new_agent_to_reach_an_old_cluster() -> None:
    assert within_reach(10**9, 1, MAX_LAMPORT_CATCH_UP)
    assert not within_reach(2**64 - 1, 1, MAX_LAMPORT_CATCH_UP)


def test_far_future_leave_intent_is_dropped_and_counted() -> None:
    layer = make()
    receive(layer, alive("b"))
    before = layer.lamport_time
    receive(layer, user(encode_leave_intent("b", 2**64 - 1, False)))
    assert layer.member("b").status is MemberStatus.ALIVE
    assert layer.lamport_time == before
    assert layer.stats.dropped["lamport_out_of_range"] == 1


def test_far_future_join_intent_and_user_event_are_dropped() -> None:
    layer = make()
    receive(layer, user(encode_join_intent("b", 2**63)))
    event = BufferedEvent(2**64 - 1, "deploy", b"", False)
    effects = receive(layer, user(encode_user_event(event)))
    assert not [e for e in effects if type(e).__name__ == "UserEvent"]
    assert layer.stats.dropped["lamport_out_of_range"] == 2
    assert layer.lamport_time < MAX_LAMPORT_STEP
    assert layer.event_time < MAX_LAMPORT_STEP


def test_leave_within_the_step_still_works_and_is_refuted_by_its_member() -> None:
    layer = make()
    receive(layer, alive("b"))
    receive(layer, user(encode_leave_intent("b", MAX_LAMPORT_STEP, False)))
    assert layer.member("b").status is MemberStatus.LEAVING
    receive(layer, user(encode_join_intent("b", MAX_LAMPORT_STEP + 1)))
    assert layer.member("b").status is MemberStatus.ALIVE


def test_push_pull_state_far_ahead_is_refused_whole() -> None:
    layer = make()
    receive(layer, alive("b"))
    state = encode_state(2**64 - 1, {"b": 2**64 - 2}, ["b"], 0, [])
    layer.merge_remote_state(state, False)
    layer.tick(1.0)
    assert layer.member("b").status is MemberStatus.ALIVE
    assert layer.lamport_time < MAX_LAMPORT_STEP
    assert layer.stats.dropped["lamport_out_of_range"] == 1


@pytest.mark.parametrize(
    ("name", "address", "ok"),
    [
        ("node-1", ("10.0.0.1", 7946), True),
        ("node-1", ("::1", 7946), True),
        ("x\nleave", ("10.0.0.1", 7946), False),
        ("x 10.0.0.1 1", ("10.0.0.1", 7946), False),
        ("node-1", ("10.0.0.1 1\nleave", 7946), False),
        ("node-1", ("10.0.0.1", 0), False),
    ],
)
def test_writable(name: str, address: tuple[str, int], ok: bool) -> None:
    assert writable(name, address) is ok


def test_writer_cannot_be_made_to_forge_a_leave_line() -> None:
    writer = SnapshotWriter(SnapshotState(), 1 << 20)
    lines = [r.line for r in writer.alive("good", ("10.0.0.1", 7946))]
    lines += [r.line for r in writer.alive("evil 10.0.0.9 1\nleave", ("10.0.0.2", 7946))]
    lines += [r.line for r in writer.not_alive("x\nleave")]
    state, problems = parse_snapshot("".join(lines).encode())
    assert not state.left
    assert not problems
    assert state.members == (("good", ("10.0.0.1", 7946)),)


def test_user_event_names_from_the_wire_are_bounded() -> None:
    layer = make()
    event = BufferedEvent(1, "e" * 129, b"", False)
    receive(layer, user(encode_user_event(event)))
    assert layer.stats.dropped["invalid_message"] == 1
