"""The agent's ring directory: member tags, registrations, last-writer-wins."""

from __future__ import annotations

import pytest

from controlplane.errors import InvalidArgument
from controlplane.rings import (
    Registration,
    RingDirectory,
    RingMember,
    check_key,
    check_metadata,
    check_weight,
    decode_registration,
    decode_state,
    encode_registration,
    encode_state,
    ring_name,
)


def member(name: str, address: str, ring: str = "cache", port: str = "11211", **tags: str):
    return RingMember(name, address, {"ring": ring, "service_port": port, **tags}, alive=True)


def test_tagged_alive_members_form_rings() -> None:
    directory = RingDirectory("agent-a")
    changed = directory.set_members(
        [
            member("a", "10.0.0.1"),
            member("b", "10.0.0.2", ring_weight="3"),
            member("c", "10.0.0.3", ring="cache,sessions"),
            RingMember("d", "10.0.0.4", {"ring": "cache", "service_port": "1"}, alive=False),
            RingMember("e", "10.0.0.5", {"service_port": "1"}, alive=True),
            member("f", "10.0.0.6", port="http"),
        ]
    )
    assert changed == ["cache", "sessions"]
    cache = directory.view("cache")
    assert [e.id for e in cache.entries] == ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]
    assert cache.ring.weights["10.0.0.2:11211"] == 3
    assert [e.member_name for e in directory.view("sessions").entries] == ["c"]


def test_versions_change_only_when_the_ring_changes() -> None:
    directory = RingDirectory("agent-a")
    directory.set_members([member("a", "10.0.0.1")])
    assert directory.view("cache").version == 1
    assert directory.set_members([member("a", "10.0.0.1")]) == []
    assert directory.view("cache").version == 1
    directory.set_members([member("a", "10.0.0.1"), member("b", "10.0.0.2")])
    assert directory.view("cache").version == 2
    directory.set_members([])
    assert directory.view("cache").version == 3
    assert directory.view("cache").entries == ()


def test_unknown_ring_is_empty_at_version_zero() -> None:
    view = RingDirectory("a").view("nothing")
    assert (view.version, view.entries, len(view.ring)) == (0, (), 0)


def test_registration_then_removal_replicates_last_writer_wins() -> None:
    here, there = RingDirectory("agent-a"), RingDirectory("agent-b")
    added = here.register("cache", "10.1.0.1", 6379, 2, {"zone": "z1"})
    removed = here.unregister("cache", added.id, now=10.0)
    assert removed is not None
    # Delivered out of order: the removal first, then the stale registration.
    assert there.apply(removed, now=11.0)
    assert not there.apply(added, now=12.0)
    assert there.view("cache").entries == here.view("cache").entries == ()


def test_concurrent_writes_resolve_the_same_everywhere() -> None:
    a, b = RingDirectory("agent-a"), RingDirectory("agent-b")
    from_a = a.register("r", "10.1.0.1", 80, 1, {})
    from_b = b.register("r", "10.1.0.1", 80, 5, {})  # same id, same Lamport time
    a.apply(from_b, now=1.0)
    b.apply(from_a, now=1.0)
    assert a.view("r").ring.weights == b.view("r").ring.weights == {"10.1.0.1:80": 5}
    assert a.view("r").checksum == b.view("r").checksum


def test_lamport_clock_moves_past_what_it_has_seen() -> None:
    directory = RingDirectory("agent-a")
    directory.apply(
        Registration("r", "h:1", "h", 1, 1, {}, lamport_time=41, origin="agent-b"), now=0.0
    )
    assert directory.register("r", "h", 2, 1, {}).lamport_time == 42


def test_a_member_wins_over_a_registration_with_the_same_id() -> None:
    directory = RingDirectory("agent-a")
    directory.register("cache", "10.0.0.1", 11211, 7, {})
    directory.set_members([member("a", "10.0.0.1")])
    [entry] = directory.view("cache").entries
    assert (entry.member_name, entry.weight) == ("a", 1)


def test_tombstones_expire_after_the_timeout() -> None:
    directory = RingDirectory("agent-a", tombstone_timeout=100.0)
    added = directory.register("r", "h", 1, 1, {})
    directory.unregister("r", added.id, now=5.0)
    directory.expire(now=104.9)
    assert len(directory.registrations()) == 1
    directory.expire(now=105.0)
    assert directory.registrations() == []


def test_unregister_of_an_unknown_node_is_none() -> None:
    assert RingDirectory("a").unregister("r", "h:1", now=0.0) is None


@pytest.mark.parametrize(
    ("check", "value", "needle"),
    [
        (ring_name, "bad name", "ring: must be 1 to 128 characters"),
        (check_key, "", "key: must be 1 to 1024 bytes"),
        (check_key, "k" * 1025, "got 1025"),
        (check_weight, 1001, "weight: must be 1 to 1000"),
        (check_metadata, {f"k{i}": "v" for i in range(17)}, "at most 16 entries"),
        (check_metadata, {"k": "v" * 512}, "metadata: must be at most 512 bytes in all, got 513"),
    ],
)
def test_limits_name_the_field(check, value, needle: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check(value)
    assert needle in str(raised.value)


def test_limits_accept_their_boundaries() -> None:
    assert ring_name("") == "default"
    assert check_key("k" * 1024) == b"k" * 1024
    assert check_weight(0) == 1
    assert check_weight(1000) == 1000
    assert len(check_metadata({"k": "v" * 511})) == 1


def test_registrations_round_trip_and_garbage_is_refused() -> None:
    directory = RingDirectory("agent-a")
    registration = directory.register("r", "10.0.0.1", 80, 3, {"b": "2", "a": "1"})
    assert decode_registration(encode_registration(registration)) == registration
    assert decode_state(encode_state([registration])) == [registration]
    assert decode_registration(b"\xff\x00garbage") is None
    assert decode_state(b"\xff\xff") is None
    forged = Registration("r", "10.0.0.9:81", "10.0.0.1", 80, 1, {}, 1, "x")
    assert decode_registration(encode_registration(forged)) is None  # id must match
