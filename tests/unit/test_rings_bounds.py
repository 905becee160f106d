"""Ring registrations from the network: a Lamport time far ahead and a bad origin
name are refused (issue 13: Lamport-timed messages and names on every path)."""

from __future__ import annotations

from controlplane.rings.directory import (
    MAX_LAMPORT_AHEAD,
    Registration,
    RingDirectory,
    decode_registration,
    encode_registration,
)


def _registration(lamport_time: int, *, removed: bool = False, origin: str = "b") -> Registration:
    return Registration(
        "cache", "10.0.0.7:11211", "10.0.0.7", 11211, 1, {}, lamport_time, origin, removed
    )


def test_far_future_removal_is_refused_and_the_node_can_be_registered_again() -> None:
    directory = RingDirectory("agent-a")
    directory.register("cache", "10.0.0.7", 11211, 1, {})
    forged = _registration(2**64 - 1, removed=True)
    merge = directory.merge_registrations([forged], now=1.0)
    assert merge.accepted == []
    assert directory.registrations_out_of_range == 1
    assert [e.id for e in directory.view("cache").entries] == ["10.0.0.7:11211"]
    # The next local change still fits the wire's uint64.
    removal = directory.unregister("cache", "10.0.0.7:11211", now=2.0)
    assert removal is not None
    assert decode_registration(encode_registration(removal)) == removal


def test_catch_up_within_the_bound_is_believed() -> None:
    directory = RingDirectory("agent-a")
    merge = directory.merge_registrations([_registration(MAX_LAMPORT_AHEAD)], now=1.0)
    assert len(merge.accepted) == 1
    assert directory.registrations_out_of_range == 0


def test_origin_must_be_a_member_name() -> None:
    for origin in ("evil\nname", "a b", ""):
        data = encode_registration(_registration(1, origin=origin))
        assert decode_registration(data) is None
    assert decode_registration(encode_registration(_registration(1))) is not None
