"""The layer's incremental structures against the same state rebuilt from scratch.

Member views (``members()``, ``member()``, ``alive_count()``) are cached per member
and invalidated on change; push-pull states are merged a slice at a time. On random
sequences of gossip, intents and push-pulls, a layer that merges in random slices
must end exactly where one that merges at once does, and every cached view must
equal a view built afresh from the layer's state.
"""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.gossip import codec
from controlplane.membership import Effect, MemberEvent, MemberInfo, Membership, MemberStatus
from controlplane.membership.messages import (
    decode_state,
    encode_join_intent,
    encode_leave_intent,
    encode_state,
)
from controlplane.membership.tags import encode_tags
from controlplane.wire.v1 import gossip_pb2 as pb
from tests.unit.membership.helpers import alive, dead, make, receive, user

NAMES = [f"m{i}" for i in range(8)]

names = st.sampled_from(NAMES)
incarnations = st.integers(min_value=1, max_value=6)
metas = st.sampled_from([b"", encode_tags({"role": "server"}), encode_tags({"ring": "r"})])

gossip_op = st.one_of(
    st.tuples(st.just("alive"), names, incarnations, metas),
    st.tuples(st.just("dead"), names, incarnations, st.booleans()),
    st.tuples(st.just("suspect"), names, incarnations),
    st.tuples(st.just("join_intent"), names, st.integers(min_value=1, max_value=30)),
    st.tuples(st.just("leave_intent"), names, st.integers(min_value=1, max_value=30)),
    st.tuples(st.just("tick"), st.floats(min_value=0.1, max_value=3600.0)),
)
record = st.tuples(names, incarnations, metas, st.sampled_from([1, 2, 3, 4]))
push_pull_op = st.tuples(
    st.just("push_pull"),
    st.lists(record, max_size=8),
    st.dictionaries(names, st.integers(min_value=0, max_value=30), max_size=8),
    st.lists(names, max_size=3),
    st.integers(min_value=1, max_value=5),
)
operations = st.lists(st.one_of(gossip_op, push_pull_op), max_size=30)


def push_pull_frame(records: list[tuple[str, int, bytes, int]], times, left) -> bytes:
    state = pb.PushPullState(protocol_version=codec.PROTOCOL_VERSION)
    for name, incarnation, meta, status in {r[0]: r for r in records}.values():
        state.members.add(
            name=name,
            address=pb.Address(host="10.0.1.1", port=7946),
            meta=meta,
            incarnation=incarnation,
            status=status,
        )
    state.user_state = encode_state(7, times, left, 1, [])
    return codec.seal(codec.frame_header("", False), state.SerializeToString(), None)


def rebuilt(layer: Membership, name: str) -> MemberInfo:
    """The member's view built from the layer's state without any cache."""
    state = layer._members[name]
    incarnation = layer.node.incarnation_of(name, state.address)
    return MemberInfo(
        name=state.name,
        address=state.address,
        tags=MappingProxyType(dict(state.tags)),
        status=state.status,
        incarnation=state.incarnation if incarnation is None else incarnation,
    )


def events(effects: list[Effect]) -> list[tuple[str, tuple[MemberInfo, ...]]]:
    return [(e.type.value, e.members) for e in effects if isinstance(e, MemberEvent)]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(operations, st.integers(min_value=1, max_value=4))
def test_sliced_merges_and_cached_views_match_a_rebuild(ops, slice_size):
    at_once, sliced = make(), make()
    now = 1.0
    for op in ops:
        if op[0] == "push_pull":
            _, records, times, left, _limit = op
            frame = push_pull_frame(records, times, left)
            _reply, expected = at_once.handle_push_pull(("10.0.0.9", 7946), frame, now)
            job = sliced.open_push_pull(frame)
            got: list[Effect] = []
            while not job.done:
                got.extend(sliced.merge_some(job, now, slice_size))
            assert events(got) == events(expected)
            assert sliced.push_pull_reply() == at_once.push_pull_reply()
            continue
        if op[0] == "tick":
            now += op[1]
            assert events(sliced.tick(now)) == events(at_once.tick(now))
            continue
        if op[0] == "alive":
            message = alive(op[1], op[2], op[3])
        elif op[0] == "dead":
            message = dead(op[1], op[2], op[1] if op[3] else "other")
        elif op[0] == "suspect":
            message = codec.encode_suspect(op[2], op[1], "other")
        elif op[0] == "join_intent":
            message = user(encode_join_intent(op[1], op[2]))
        else:
            message = user(encode_leave_intent(op[1], op[2], False))
        assert events(receive(sliced, message, now=now)) == events(
            receive(at_once, message, now=now)
        )

    assert sliced.members() == at_once.members()
    for layer in (sliced, at_once):
        views = layer.members()
        assert [m.name for m in views] == sorted(layer._members)
        assert views == [rebuilt(layer, m.name) for m in views]
        assert all(layer.member(m.name) == m for m in views)
        assert layer.alive_count() == sum(m.status is MemberStatus.ALIVE for m in views)
        # An unchanged member is the very same object from one listing to the next.
        assert all(a is b for a, b in zip(views, layer.members(), strict=True))
        # The push-pull state, assembled from cached fields, says what a fresh
        # encoding of the layer's state says.
        state = decode_state(layer.local_state(False))
        assert state is not None
        assert {t.node: t.lamport_time for t in state.status_times} == {
            name: member.status_ltime for name, member in layer._members.items()
        }
        assert sorted(state.left_members) == sorted(
            name for name, member in layer._members.items() if member.status is MemberStatus.LEFT
        )
