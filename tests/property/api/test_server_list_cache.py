"""The heartbeat's server list, kept from member events, against a rebuild from scratch.

`ServerList` follows member events (and re-reads the few members whose status
changes without one). On random sequences of gossip, intents, failures, reaps,
push-pulls and local tag changes, driven through a real membership layer, the
cached list must always equal `live_servers(layer.members(), version)` computed
afresh, for every client API version. A heartbeat must never walk the members.
"""

from __future__ import annotations

import random
from dataclasses import replace
from types import MappingProxyType
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.api.heartbeat import HeartbeatRpcs, ServerList, live_servers, server_proto
from controlplane.gossip import GossipConfig, codec
from controlplane.heartbeat.tracker import HeartbeatTracker
from controlplane.membership import (
    Effect,
    EventType,
    MemberEvent,
    MemberInfo,
    Membership,
    MembershipConfig,
    MemberStatus,
)
from controlplane.membership.messages import encode_join_intent, encode_leave_intent, encode_state
from controlplane.membership.tags import encode_tags
from controlplane.pool import ApiVersion
from controlplane.v1 import server_pool_pb2 as pb
from controlplane.wire.v1 import gossip_pb2
from tests.unit.membership.helpers import datagram

NAMES = [f"m{i}" for i in range(8)]
VERSIONS = [None, ApiVersion(1, 0), ApiVersion(1, 5), ApiVersion(2, 0), ApiVersion(0, 1)]
TAG_SETS = [
    {"role": "server", "api_version": "1.0"},
    {"role": "server", "api_version": "1.3", "dc": "east"},
    {"role": "server", "api_version": "2.0"},
    {"role": "server"},
    {"role": "server", "api_version": "1.0", "draining": "true"},
    {"role": "client", "api_version": "1.0"},
    {},
]
ADDRESSES = [("10.0.1.1", 7946), ("10.0.1.2", 7946), ("10.0.1.1", 8000)]

names = st.sampled_from(NAMES)
incarnations = st.integers(min_value=1, max_value=6)
tag_sets = st.sampled_from(range(len(TAG_SETS)))
addresses = st.sampled_from(range(len(ADDRESSES)))

operation = st.one_of(
    st.tuples(st.just("alive"), names, incarnations, tag_sets, addresses),
    st.tuples(st.just("dead"), names, incarnations, st.booleans()),
    st.tuples(st.just("suspect"), names, incarnations),
    st.tuples(st.just("join_intent"), names, st.integers(min_value=1, max_value=30)),
    st.tuples(st.just("leave_intent"), names, st.integers(min_value=1, max_value=30)),
    st.tuples(st.just("tick"), st.floats(min_value=0.1, max_value=100_000.0)),
    st.tuples(st.just("local_tags"), tag_sets),
    st.tuples(
        st.just("push_pull"),
        st.lists(st.tuples(names, incarnations, tag_sets, st.sampled_from([1, 2, 3, 4]))),
        st.dictionaries(names, st.integers(min_value=0, max_value=30), max_size=8),
        st.lists(names, max_size=3),
    ),
)


def local_layer() -> Membership:
    return Membership(
        GossipConfig.lan(),
        MembershipConfig(),
        "local",
        ("10.0.0.1", 7946),
        tags={"role": "server", "api_version": "1.0"},
        rng=random.Random(1),
        now=0.0,
    )


def push_pull_frame(records: list[Any], times: dict[str, int], left: list[str]) -> bytes:
    state = gossip_pb2.PushPullState(protocol_version=codec.PROTOCOL_VERSION)
    for name, incarnation, tags, status in {r[0]: r for r in records}.values():
        state.members.add(
            name=name,
            address=gossip_pb2.Address(host="10.0.1.1", port=7946),
            meta=encode_tags(TAG_SETS[tags]),
            incarnation=incarnation,
            status=status,
        )
    state.user_state = encode_state(7, times, left, 1, [])
    return codec.seal(codec.frame_header("", False), state.SerializeToString(), None)


def apply_op(layer: Membership, op: tuple[Any, ...], now: float) -> list[Effect]:
    kind = op[0]
    if kind == "tick":
        return layer.tick(now)
    if kind == "local_tags":
        tags = TAG_SETS[op[1]]
        stale = [key for key in layer.local_member().tags if key not in tags]
        return layer.update_tags(tags, stale, now)
    if kind == "push_pull":
        frame = push_pull_frame(op[1], op[2], op[3])
        _reply, effects = layer.handle_push_pull(("10.0.0.9", 7946), frame, now)
        return effects
    if kind == "alive":
        _, name, incarnation, tags, address = op
        message = codec.encode_alive(
            incarnation, name, ADDRESSES[address], encode_tags(TAG_SETS[tags])
        )
    elif kind == "dead":
        message = codec.encode_dead(op[2], op[1], op[1] if op[3] else "other")
    elif kind == "suspect":
        message = codec.encode_suspect(op[2], op[1], "other")
    elif kind == "join_intent":
        message = codec.encode_user(encode_join_intent(op[1], op[2]))
    else:
        message = codec.encode_user(encode_leave_intent(op[1], op[2], False))
    return layer.receive_packet(("10.0.0.99", 7946), datagram(message), now)


def expected(layer: Membership, version: ApiVersion | None) -> list[pb.Server]:
    return [server_proto(m) for m in live_servers(layer.members(), version)]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(operation, max_size=40))
def test_the_cached_list_equals_a_rebuild_on_a_real_layer(ops: list[tuple[Any, ...]]) -> None:
    layer = local_layer()
    servers = ServerList(layer)
    now = 1.0
    for op in ops:
        if op[0] == "tick":
            now += op[1]
        for effect in apply_op(layer, op, now):
            if isinstance(effect, MemberEvent):
                servers.on_member_event(effect)
        for version in VERSIONS:
            assert servers.servers(version) == expected(layer, version), (op, version)


class FakeLayer:
    """Members by name, each an immutable MemberInfo replaced on every change, with
    events queued for delivery; counts full walks of the member list."""

    def __init__(self) -> None:
        self.infos: dict[str, MemberInfo] = {}
        self.walks = 0
        self.version = 0
        self.local = "local"
        self.set("local", status=MemberStatus.ALIVE, tags={"role": "server"})

    def set(self, name: str, **changes: Any) -> MemberInfo:
        current = self.infos.get(name) or MemberInfo(
            name, ("10.0.0.1", 7946), MappingProxyType({}), MemberStatus.ALIVE, 1
        )
        if "tags" in changes:
            changes["tags"] = MappingProxyType(dict(changes["tags"]))
        info = replace(current, **changes)
        if name not in self.infos or info.status is not current.status:
            self.version += 1
        self.infos[name] = info
        return info

    def members(self) -> list[MemberInfo]:
        self.walks += 1
        return [self.infos[name] for name in sorted(self.infos)]

    def member(self, name: str) -> MemberInfo | None:
        return self.infos.get(name)

    def local_member(self) -> MemberInfo:
        return self.infos[self.local]

    def alive_count(self) -> int:
        return sum(1 for m in self.infos.values() if m.status is MemberStatus.ALIVE)

    def status_version(self) -> int:
        return self.version


fake_op = st.one_of(
    st.tuples(st.just("join"), names, tag_sets, addresses),
    st.tuples(st.just("update"), names, tag_sets),
    st.tuples(st.just("fail"), names),
    st.tuples(st.just("leave"), names),
    st.tuples(st.just("reap"), names),
    # Changes the layer makes without an event.
    st.tuples(st.just("silent_leaving"), names),
    st.tuples(st.just("silent_alive"), names),
    st.tuples(st.just("bump"), names),
    st.tuples(st.just("local_status"), st.sampled_from([MemberStatus.LEFT, MemberStatus.ALIVE])),
    st.tuples(st.just("deliver"), st.randoms(use_true_random=False)),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(fake_op, max_size=50), st.randoms(use_true_random=False))
def test_events_may_be_batched_repeated_or_reordered(
    ops: list[tuple[Any, ...]], rng: random.Random
) -> None:
    layer = FakeLayer()
    servers = ServerList(layer)
    pending: list[MemberEvent] = []

    def deliver(order: random.Random) -> None:
        # Coalesced into one event, repeated, and in any order: each member is re-read.
        batch = pending + order.sample(pending, k=len(pending) // 2)
        order.shuffle(batch)
        for event in batch:
            servers.on_member_event(event)
        if pending:
            merged = tuple(m for event in pending for m in event.members)
            servers.on_member_event(MemberEvent(EventType.MEMBER_UPDATE, merged))
        pending.clear()

    for op in ops:
        kind, name = op[0], op[1]
        current = layer.infos.get(name) if isinstance(name, str) else None
        if kind == "join":
            info = layer.set(
                name, status=MemberStatus.ALIVE, tags=TAG_SETS[op[2]], address=ADDRESSES[op[3]]
            )
            pending.append(MemberEvent(EventType.MEMBER_JOIN, (info,)))
        elif kind == "update" and current is not None:
            info = layer.set(name, tags=TAG_SETS[op[2]])
            pending.append(MemberEvent(EventType.MEMBER_UPDATE, (info,)))
        elif kind in ("fail", "leave") and current is not None and name != layer.local:
            status = MemberStatus.FAILED if kind == "fail" else MemberStatus.LEFT
            info = layer.set(name, status=status)
            event = EventType.MEMBER_FAILED if kind == "fail" else EventType.MEMBER_LEAVE
            pending.append(MemberEvent(event, (info,)))
        elif kind == "reap" and current is not None and name != layer.local:
            del layer.infos[name]
            pending.append(MemberEvent(EventType.MEMBER_REAP, (current,)))
        elif kind == "silent_leaving" and current and current.status is MemberStatus.ALIVE:
            layer.set(name, status=MemberStatus.LEAVING)
        elif kind == "silent_alive" and current and current.status is MemberStatus.LEAVING:
            layer.set(name, status=MemberStatus.ALIVE)
        elif kind == "bump" and current is not None:
            layer.set(name, incarnation=current.incarnation + 1)
        elif kind == "local_status":
            layer.set(layer.local, status=name)
        elif kind == "deliver":
            deliver(name)
        if rng.random() < 0.3:
            deliver(rng)
            for version in VERSIONS:
                scratch = [server_proto(m) for m in live_servers(layer.members(), version)]
                assert servers.servers(version) == scratch, (op, version)
    deliver(rng)
    for version in VERSIONS:
        scratch = [server_proto(m) for m in live_servers(layer.members(), version)]
        assert servers.servers(version) == scratch


def test_a_client_member_joining_leaves_the_server_list_untouched() -> None:
    layer = FakeLayer()
    servers = ServerList(layer)
    before = servers.servers(ApiVersion(1, 0))
    client = layer.set("c1", tags={"role": "client"})
    servers.on_member_event(MemberEvent(EventType.MEMBER_JOIN, (client,)))
    bumped = layer.set("local", incarnation=7)
    servers.on_member_event(MemberEvent(EventType.MEMBER_UPDATE, (bumped,)))
    # Not rebuilt: the very same list object is handed out.
    assert servers.servers(ApiVersion(1, 0)) is before
    server = layer.set("s1", tags={"role": "server"})
    servers.on_member_event(MemberEvent(EventType.MEMBER_JOIN, (server,)))
    assert [s.name for s in servers.servers(ApiVersion(1, 0))] == ["local", "s1"]


class Context:
    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"


async def test_heartbeats_never_walk_the_members() -> None:
    layer = FakeLayer()
    for index in range(2000):
        role = "server" if index % 400 == 0 else "client"
        layer.set(f"n{index:04d}", tags={"role": role, "api_version": "1.0"})
    rpcs = HeartbeatRpcs(
        cast(Any, layer), HeartbeatTracker(random.Random(0)), lambda: 5.0, lambda: None
    )
    assert layer.walks == 1  # the initial state, once
    joined = layer.set("n9999", tags={"role": "server"})
    rpcs.on_member_event(MemberEvent(EventType.MEMBER_JOIN, (joined,)))
    context = cast(Any, Context())
    for client in range(50):
        request = pb.HeartbeatRequest(
            client_id=f"client-{client}", api_version=pb.ApiVersion(major=1, minor=0)
        )
        answer = rpcs.Heartbeat(request, context)
        servers = live_servers(list(layer.infos.values()), ApiVersion(1, 0))
        random.Random(request.client_id).shuffle(servers)
        # The same per-client order as a shuffle of the list computed from scratch.
        assert list(answer.servers) == [server_proto(m) for m in servers]
        assert answer.num_nodes == layer.alive_count() == 2002
    assert layer.walks == 1


@pytest.mark.parametrize("reaped_then_back", [False, True])
def test_a_reaped_server_is_dropped_unless_it_is_back(reaped_then_back: bool) -> None:
    layer = FakeLayer()
    server = layer.set("s1", tags={"role": "server"})
    servers = ServerList(layer)
    assert [s.name for s in servers.servers(None)] == ["local", "s1"]
    del layer.infos["s1"]
    if reaped_then_back:
        layer.set("s1", tags={"role": "server"})
    servers.on_member_event(MemberEvent(EventType.MEMBER_REAP, (server,)))
    names = ["local", "s1"] if reaped_then_back else ["local"]
    assert [s.name for s in servers.servers(None)] == names
