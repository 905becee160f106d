"""The agent's ring directory: member tags, registrations, last-writer-wins."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.errors import InvalidArgument
from controlplane.ring import DEFAULT_RING_SETTINGS, HashRing, LookupRule, RingSettings
from controlplane.rings import directory as rings
from controlplane.rings.directory import (
    MAX_LAMPORT_AHEAD,
    Registration,
    RingDirectory,
    RingMember,
    check_address,
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


def test_member_updates_touch_only_their_rings() -> None:
    directory = RingDirectory("agent-a")
    directory.update_members([member("a", "10.0.0.1"), member("b", "10.0.0.2", ring="sessions")])
    assert (directory.view("cache").version, directory.view("sessions").version) == (1, 1)

    assert directory.update_members([member("c", "10.0.0.3")]) == ["cache"]
    assert (directory.view("cache").version, directory.view("sessions").version) == (2, 1)
    # Moving a member between rings changes both; re-sending it changes nothing.
    moved = member("c", "10.0.0.3", ring="sessions")
    assert directory.update_members([moved]) == ["cache", "sessions"]
    assert directory.update_members([moved]) == []
    assert directory.remove_members(["c", "nobody"]) == ["sessions"]
    assert [e.member_name for e in directory.view("sessions").entries] == ["b"]


def test_a_failed_member_leaves_its_rings_and_comes_back() -> None:
    directory = RingDirectory("agent-a")
    directory.set_members([member("a", "10.0.0.1"), member("b", "10.0.0.2")])
    failed = RingMember("a", "10.0.0.1", {"ring": "cache", "service_port": "11211"}, alive=False)
    assert directory.update_members([failed]) == ["cache"]
    assert [e.id for e in directory.view("cache").entries] == ["10.0.0.2:11211"]
    assert directory.update_members([member("a", "10.0.0.1")]) == ["cache"]
    assert len(directory.view("cache").entries) == 2


def test_between_two_members_with_one_id_the_smaller_name_wins() -> None:
    directory = RingDirectory("agent-a")
    directory.update_members([member("m2", "10.0.0.1", ring_weight="2")])
    directory.update_members([member("m1", "10.0.0.1", ring_weight="3")])
    [entry] = directory.view("cache").entries
    assert (entry.member_name, entry.weight) == ("m1", 3)
    directory.remove_members(["m1"])
    [entry] = directory.view("cache").entries
    assert (entry.member_name, entry.weight) == ("m2", 2)


def test_a_registration_comes_back_when_the_member_hiding_it_leaves() -> None:
    directory = RingDirectory("agent-a")
    directory.register("cache", "10.0.0.1", 11211, 7, {})
    directory.update_members([member("a", "10.0.0.1")])
    assert directory.remove_members(["a"]) == ["cache"]
    [entry] = directory.view("cache").entries
    assert (entry.registered, entry.weight) == (True, 7)


def test_each_ring_is_derived_once_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    derivations: list[int] = []
    original = HashRing.with_changes

    def counting(self: HashRing, add: Any = (), remove: Any = ()) -> HashRing:
        derivations.append(1)
        return original(self, add, remove)

    monkeypatch.setattr(HashRing, "with_changes", counting)
    source = RingDirectory("a")
    batch = [source.prepare(f"r{i % 2}", f"10.1.0.{i}", 80, 1, {}) for i in range(1, 101)]
    target = RingDirectory("b")
    merge = target.merge_registrations(batch, now=0.0)
    assert (len(merge.accepted), merge.changed, merge.dropped) == (100, ["r0", "r1"], 0)
    assert len(derivations) == 2
    members = [member(f"m{i}", f"10.2.0.{i}") for i in range(50)]
    target.set_members(members)
    assert len(derivations) == 3
    target.set_members(members)  # nothing changed: nothing derived
    assert len(derivations) == 3


def test_registrations_beyond_the_cap_are_dropped_on_every_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rings, "MAX_REGISTRATIONS", 3)
    source = RingDirectory("peer")
    batch = [source.prepare("r", f"10.1.0.{i}", 80, 1, {}) for i in range(1, 6)]
    directory = RingDirectory("a")
    assert directory.max_registrations == 3

    merge = directory.merge_registrations(batch, now=0.0)

    assert (len(merge.accepted), merge.dropped) == (3, 2)
    assert directory.live_registrations == 3
    assert directory.registrations_dropped == 2
    assert len(directory.view("r").entries) == 3
    assert [r.id for r in directory.registrations()] == [r.id for r in batch[:3]]
    # One message at a time (the gossip path) is held to the same cap.
    extra = source.prepare("r", "10.1.0.9", 80, 1, {})
    assert not directory.apply(extra, now=0.0)
    assert directory.registrations_dropped == 3
    # A newer copy of a kept registration is not a new one: it is applied.
    reweighted = Registration("r", batch[0].id, "10.1.0.1", 80, 5, {}, 9, "peer")
    assert directory.apply(reweighted, now=0.0)
    # A tombstone in the same batch frees room for an addition.
    tombstone = Registration("r", batch[1].id, "10.1.0.2", 80, 1, {}, 9, "peer", removed=True)
    merge = directory.merge_registrations([extra, tombstone], now=1.0)
    assert (len(merge.accepted), merge.dropped) == (2, 0)
    assert directory.live_registrations == 3
    # A registration replacing a tombstone is a new live one: over the cap, dropped.
    revived = Registration("r", batch[1].id, "10.1.0.2", 80, 1, {}, 10, "peer")
    assert not directory.apply(revived, now=2.0)
    assert not directory.is_registered("r", batch[1].id)
    assert directory.live_registrations == 3 == len(directory.view("r").entries)


def test_the_cap_can_be_given_per_directory() -> None:
    directory = RingDirectory("a", max_registrations=1)
    directory.register("r", "10.0.0.1", 80, 1, {})
    directory.register("r", "10.0.0.2", 80, 1, {})
    assert [r.id for r in directory.registrations()] == ["10.0.0.1:80"]
    assert directory.registrations_dropped == 1


def test_a_state_beyond_the_state_cap_is_refused(monkeypatch):
    import controlplane.rings.directory as rings_module

    monkeypatch.setattr(rings_module, "MAX_STATE_REGISTRATIONS", 3)
    directory = rings_module.RingDirectory("a")
    registrations = [directory.prepare("cache", f"10.0.0.{i}", 80, 1, {}) for i in range(1, 5)]
    assert rings_module.decode_state(rings_module.encode_state(registrations)) is None
    assert rings_module.decode_state(rings_module.encode_state(registrations[:3])) == [
        *registrations[:3]
    ]


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


def test_control_characters_are_not_ring_addresses() -> None:
    with pytest.raises(InvalidArgument, match="printable ASCII"):
        check_address("a\x01b", 80)
    with pytest.raises(InvalidArgument):
        check_address("héllo", 80)


def test_a_registration_no_ring_accepts_is_rolled_back() -> None:
    directory = RingDirectory("a")
    directory.register("r", "10.0.0.1", 80, 1, {})
    before = directory.registrations()
    broken = Registration("r", "bad\x01id:1", "bad\x01id", 1, 1, {}, 99, "x")
    with pytest.raises(InvalidArgument):
        directory.apply(broken, now=0.0)
    assert directory.registrations() == before
    assert [e.id for e in directory.view("r").entries] == ["10.0.0.1:80"]


def test_many_registrations_are_merged_with_one_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    source = RingDirectory("a")
    registrations = [
        source.prepare("r", f"10.1.{i // 250}.{i % 250}", 80, 1, {}) for i in range(300)
    ]
    target = RingDirectory("b")
    rebuilds: list[int] = []
    original = target._rebuild

    def counting() -> list[str]:
        rebuilds.append(1)
        return original()

    monkeypatch.setattr(target, "_rebuild", counting)
    assert len(target.apply_many(registrations, now=0.0)) == 300
    assert len(rebuilds) == 1
    assert len(target.view("r").entries) == 300


RINGMAN = RingSettings(vnodes=40, points_per_vnode=3, lookup=LookupRule.AFTER)


def test_each_ring_places_keys_with_its_configured_settings() -> None:
    directory = RingDirectory("agent-a", ring_settings={"cache": RINGMAN})
    directory.set_members(
        [member("a", "10.0.0.1", ring="cache,plain"), member("b", "10.0.0.2", ring="cache,plain")]
    )
    directory.register("cache", "10.0.0.3", 11211, 2, {})
    directory.register("plain", "10.0.0.3", 11211, 2, {})
    weights = {"10.0.0.1:11211": 1, "10.0.0.2:11211": 1, "10.0.0.3:11211": 2}

    cache, plain = directory.view("cache"), directory.view("plain")

    assert cache.ring.settings == directory.settings("cache") == RINGMAN
    assert plain.ring.settings == directory.settings("plain") == DEFAULT_RING_SETTINGS
    # Derived member by member, each ring equals a ring built whole with its settings.
    assert cache.ring == HashRing(weights, settings=RINGMAN)
    assert cache.checksum == HashRing(weights, settings=RINGMAN).checksum
    assert plain.checksum == HashRing(weights).checksum
    assert cache.ring.point_count == (30 + 30 + 60) * 3
    # Key "<id>-<j>" lands on vnode j's first point: AFTER gives it to the next
    # point, so the derived ring's lookups follow the configured rule.
    on_points = [f"10.0.0.1:11211-{index}" for index in range(30)]
    ketama = HashRing(weights, settings=RingSettings(vnodes=40, points_per_vnode=3))
    assert all(ketama.get_node(key) == "10.0.0.1:11211" for key in on_points)
    assert {cache.ring.get_node(key) for key in on_points} > {"10.0.0.1:11211"}


def test_a_configured_ring_nobody_joined_is_empty_with_its_settings() -> None:
    directory = RingDirectory("agent-a", ring_settings={"cache": RINGMAN})

    assert directory.view("cache").ring.settings == RINGMAN
    assert directory.view("cache").version == 0
    assert directory.view("other").ring.settings == DEFAULT_RING_SETTINGS
    directory.register("cache", "10.0.0.3", 11211, 1, {})
    removal = directory.unregister("cache", "10.0.0.3:11211", now=0.0)
    assert removal is not None
    # Emptied again, the ring keeps its settings (and its checksum says so).
    assert directory.view("cache").ring.settings == RINGMAN
    assert directory.view("cache").checksum == HashRing(settings=RINGMAN).checksum
