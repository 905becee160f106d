"""Snapshot records, compaction and parsing (serf/snapshot.go); parsing never raises."""

from __future__ import annotations

import random

import pytest

from controlplane.membership import SnapshotState, parse_snapshot
from controlplane.membership.snapshot import SnapshotWriter

GOOD = (
    b"# written by a test\n"
    b"alive: a 10.0.0.1 7946\n"
    b"alive: b 10.0.0.2 7946\n"
    b"clock: 4\n"
    b"alive: c fd00::3 7946\n"
    b"not-alive: b\n"
    b"event-clock: 9\n"
    b"clock: 7\n"
)


def test_parse_good_file():
    state, problems = parse_snapshot(GOOD)
    assert problems == []
    assert state.members == (("a", ("10.0.0.1", 7946)), ("c", ("fd00::3", 7946)))
    assert state.lamport_time == 7
    assert state.event_time == 9
    assert not state.left
    assert state.size == len(GOOD)
    assert state.addresses(exclude="a") == [("fd00::3", 7946)]


def test_parse_truncated_file_keeps_the_complete_records():
    state, problems = parse_snapshot(GOOD[:-3])  # "clock: 7\n" cut to "clock:"
    assert state.lamport_time == 4
    assert state.event_time == 9
    assert len(problems) == 1
    assert "truncated" in problems[0]


def test_parse_garbage_never_raises():
    rng = random.Random(5)
    for _ in range(200):
        data = rng.randbytes(rng.randrange(0, 300))
        state, _problems = parse_snapshot(data)
        assert isinstance(state, SnapshotState)
    state, problems = parse_snapshot(
        b"\xff\xfe\x00garbage\nalive: x\nclock: -1\nclock: 99999999999999999999999\n"
    )
    assert state.members == ()
    assert state.lamport_time == 0
    assert len(problems) == 4
    assert parse_snapshot(b"") == (SnapshotState(), [])


def test_leave_forgets_members_but_keeps_clocks():
    state, problems = parse_snapshot(GOOD + b"leave\n")
    assert problems == []
    assert state.members == ()
    assert state.left
    assert state.event_time == 9


def test_rejoin_after_leave_keeps_the_members_before_the_leave():
    kept, problems = parse_snapshot(GOOD + b"leave\n", rejoin_after_leave=True)
    assert problems == []
    assert kept.members == parse_snapshot(GOOD)[0].members != ()
    assert kept.left
    # A member that went away before the leave stays gone.
    gone, _ = parse_snapshot(GOOD + b"not-alive: a\nleave\n", rejoin_after_leave=True)
    assert "a" not in dict(gone.members)


def test_writer_records_round_trip_through_the_parser():
    writer = SnapshotWriter(None, min_compact_size=1 << 20)
    data = b""
    for records in (
        writer.alive("a", ("10.0.0.1", 7946)),
        writer.alive("b", ("10.0.0.2", 7946)),
        writer.not_alive("a"),
        writer.not_alive("a"),  # already gone: nothing
        writer.clock(3),
        writer.clock(3),  # unchanged: nothing
        writer.event_clock(5),
    ):
        for record in records:
            assert not record.rewrite
            data += record.data
    state, problems = parse_snapshot(data)
    assert problems == []
    assert state.members == (("b", ("10.0.0.2", 7946)),)
    assert (state.lamport_time, state.event_time) == (3, 5)


def test_writer_asks_for_a_rewrite_past_the_threshold():
    writer = SnapshotWriter(None, min_compact_size=200)
    content = bytearray()
    rewrites = 0
    for index in range(40):
        for record in writer.alive("a", ("10.0.0.1", 7946)) + writer.clock(index + 1):
            if record.rewrite:
                rewrites += 1
                content.clear()
            content.extend(record.data)
    assert rewrites >= 1
    assert writer.compactions == rewrites
    assert len(content) <= 200
    state, problems = parse_snapshot(bytes(content))
    assert problems == []
    assert state.members == (("a", ("10.0.0.1", 7946)),)
    assert state.lamport_time == 40


def test_an_alive_record_needs_an_ip_address_and_a_port():
    data = (
        b"alive: x 300.1.1.1 1\n"
        b"alive: h example.com 7946\n"
        b"alive: p 10.0.0.1 000007946\n"
        b"alive: y 10.0.0.1 7946\n"
        b"alive: z ::1 7946\n"
    )
    state, problems = parse_snapshot(data)
    assert state.members == (("y", ("10.0.0.1", 7946)), ("z", ("::1", 7946)))
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 2", "line 3"]


# Digits of other scripts, which str.isdigit() accepts and int() converts.
NON_ASCII_DIGITS = ["\u00b2", "\u2075", "\u0661", "\uff11"]


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
@pytest.mark.parametrize(
    "template", ["clock: {}\n", "event-clock: 1{}\n", "alive: node-a 10.0.0.1 79{}\n"]
)
def test_a_snapshot_line_with_non_ascii_digits_is_a_problem_not_a_crash(
    template: str, digit: str
) -> None:
    from controlplane.membership.snapshot import parse_snapshot

    # parse_snapshot documents that it never raises: the line is listed as a problem.
    state, problems = parse_snapshot(("clock: 7\n" + template.format(digit)).encode())
    assert (state.lamport_time, state.event_time, state.members) == (7, 0, ())
    assert len(problems) == 1
    assert problems[0].startswith("line 2: bad ")
