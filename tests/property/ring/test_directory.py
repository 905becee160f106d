"""RingDirectory driven incrementally against the same final state built afresh.

The directory derives only the rings a change touches. On random sequences of
member upserts, removals and tag changes, registrations, removals, tombstones and
their expiry, every view must equal what a straightforward reference computes from
the final state (and what a fresh directory given that state with ``set_members``
holds), and a ring's version must move exactly when its entries do.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.ring import HashRing, RingNode
from controlplane.rings.directory import (
    Registration,
    RingDirectory,
    RingEntry,
    RingMember,
    member_entries,
    node_id,
)

PROFILE = settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)

TOMBSTONE_TIMEOUT = 50.0
NAMES = ["m0", "m1", "m2", "m3", "m4"]
# Few addresses and ports, so members collide with each other and with registrations.
ADDRESSES = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1"]
PORTS = [80, 81]
RING_TAGS = ["a", "b", "a,b", "b, a,a", "", "bad name"]
WEIGHT_TAGS = ["1", "2", "3", "0", "x"]
RINGS = ["a", "b"]
METADATA = [{}, {"zone": "z1"}]

member_op = st.tuples(
    st.just("member"),
    st.sampled_from(NAMES),
    st.sampled_from(ADDRESSES),
    st.sampled_from(RING_TAGS),
    st.sampled_from(PORTS),
    st.sampled_from(WEIGHT_TAGS),
    st.booleans(),
)
registration = st.tuples(
    st.sampled_from(RINGS),
    st.sampled_from(ADDRESSES),
    st.sampled_from(PORTS),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=0, max_value=len(METADATA) - 1),
    st.integers(min_value=1, max_value=8),
    st.sampled_from(["x", "y"]),
    st.booleans(),
)
operation = st.one_of(
    member_op,
    st.tuples(st.just("members"), st.lists(member_op, max_size=4)),
    st.tuples(st.just("forget"), st.lists(st.sampled_from(NAMES), max_size=2)),
    st.tuples(st.just("set_members"), st.lists(member_op, max_size=5)),
    st.tuples(st.just("register"), st.lists(registration, min_size=1, max_size=6)),
    st.tuples(st.just("expire"), st.floats(min_value=1.0, max_value=40.0)),
)


def ring_member(op: tuple[Any, ...]) -> RingMember:
    _, name, address, rings, port, weight, alive = op
    tags = {"ring": rings, "service_port": str(port), "ring_weight": weight}
    return RingMember(name, address, tags, alive)


def to_registration(values: tuple[Any, ...]) -> Registration:
    ring, address, port, weight, meta, lamport, origin, removed = values
    return Registration(
        ring,
        node_id(address, port),
        address,
        port,
        weight,
        {} if removed else METADATA[meta],
        lamport,
        origin,
        removed,
    )


class Model:
    """The final state, kept the simple way."""

    def __init__(self) -> None:
        self.members: dict[str, RingMember] = {}
        self.registrations: dict[tuple[str, str], tuple[Registration, float]] = {}

    def merge(self, registration: Registration, now: float) -> None:
        key = (registration.ring, registration.id)
        current = self.registrations.get(key)
        if current is None or current[0].order < registration.order:
            self.registrations[key] = (registration, now)

    def expire(self, now: float) -> None:
        for key, (registration, at) in list(self.registrations.items()):
            if registration.removed and now - at >= TOMBSTONE_TIMEOUT:
                del self.registrations[key]

    def entries(self) -> dict[str, tuple[RingEntry, ...]]:
        wanted: dict[str, dict[str, RingEntry]] = {}
        for registration, _ in self.registrations.values():
            if not registration.removed:
                wanted.setdefault(registration.ring, {})[registration.id] = RingEntry(
                    registration.id,
                    registration.address,
                    registration.port,
                    registration.weight,
                    registration.metadata,
                )
        # Members win over registrations; between members, the smaller name wins,
        # so the larger names are written first and overwritten.
        for name in sorted(self.members, reverse=True):
            for ring, entry in member_entries(self.members[name]):
                wanted.setdefault(ring, {})[entry.id] = entry
        return {
            ring: tuple(sorted(by_id.values(), key=lambda e: e.id))
            for ring, by_id in wanted.items()
        }


def snapshot(directory: RingDirectory) -> dict[str, tuple[int, tuple[RingEntry, ...]]]:
    return {
        name: (view.version, view.entries)
        for name in directory.names()
        for view in [directory.view(name)]
    }


def check_views(directory: RingDirectory, expected: dict[str, tuple[RingEntry, ...]]) -> None:
    for name in set(directory.names()) | set(expected):
        view = directory.view(name)
        entries = expected.get(name, ())
        assert view.entries == entries, name
        assert dict(view.by_id) == {entry.id: entry for entry in entries}
        fresh = HashRing.from_nodes(RingNode(e.id, e.weight, e.metadata) for e in entries)
        assert view.ring == fresh
        assert view.checksum == fresh.checksum
        assert view.ring.points() == fresh.points()


@PROFILE
@given(operations=st.lists(operation, max_size=25))
def test_incremental_views_equal_the_final_state_built_afresh(
    operations: list[tuple[Any, ...]],
) -> None:
    directory = RingDirectory("agent", tombstone_timeout=TOMBSTONE_TIMEOUT)
    model = Model()
    now = 0.0
    for op in operations:
        before = snapshot(directory)
        kind = op[0]
        if kind == "member":
            member = ring_member(op)
            model.members[member.name] = member
            changed = directory.update_members([member])
        elif kind == "members":
            batch = {m.name: m for m in map(ring_member, op[1])}
            model.members.update(batch)
            changed = directory.update_members(batch.values())
        elif kind == "forget":
            for name in op[1]:
                model.members.pop(name, None)
            changed = directory.remove_members(op[1])
        elif kind == "set_members":
            model.members = {m.name: m for m in map(ring_member, op[1])}
            changed = directory.set_members(model.members.values())
        elif kind == "register":
            registrations = [to_registration(values) for values in op[1]]
            # Under the cap the directory merges a batch in order, as the model
            # does (equal Lamport orders keep the first one seen).
            for registration in registrations:
                model.merge(registration, now)
            changed = directory.merge_registrations(registrations, now).changed
        else:
            now += op[1]
            model.expire(now)
            directory.expire(now)
            changed = []
        after = snapshot(directory)

        check_views(directory, model.entries())
        moved = sorted(name for name in after if before.get(name, (0, ()))[1] != after[name][1])
        assert changed == moved
        for name, (version, _) in after.items():
            assert version == before.get(name, (0, ()))[0] + (name in moved)

    # A fresh directory handed the final state holds the same views.
    fresh = RingDirectory("other", tombstone_timeout=TOMBSTONE_TIMEOUT)
    fresh.apply_many(directory.registrations(), now)
    fresh.set_members(model.members.values())
    check_views(fresh, model.entries())
    assert directory.registrations() == fresh.registrations()
    assert directory.live_registrations == sum(not r.removed for r in directory.registrations())
