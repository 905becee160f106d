"""The Membership service on a real 3-agent cluster (processes on 127.0.0.x)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.membership import encode_tags
from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until
from controlplane.v1 import membership_pb2 as pb
from controlplane.v1 import membership_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
FAST = ["--profile", "local", "--drain-period", "0"]


class Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port(HOSTS[0], *HOSTS[1:])
        self.seed = f"{HOSTS[0]}:{self.port}"
        self.agents: dict[str, AgentProcess] = {}

    def start(self, index: int, *extra: str, join: bool = True) -> AgentProcess:
        name = f"node-{index}"
        args = [*FAST, *extra]
        if join and index != 1:
            args += ["--join", self.seed]
        agent = start_agent(
            name, host=HOSTS[index - 1], port=self.port, args=args, log_dir=self.tmp_path
        )
        self.agents[name] = agent
        return agent

    def statuses(self, observer: str) -> dict[str, str]:
        try:
            return self.agents[observer].members()
        except grpc.RpcError:
            return {}

    def converged(self, names: set[str]) -> bool:
        return all(self.statuses(n) == dict.fromkeys(names, "ALIVE") for n in names)

    def stop_all(self) -> None:
        for agent in self.agents.values():
            agent.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        for index in (1, 2, 3):
            c.start(index)
        assert wait_until(lambda: c.converged({"node-1", "node-2", "node-3"}), timeout=30)
        yield c
    finally:
        c.stop_all()


def stub(agent: AgentProcess) -> membership_pb2_grpc.MembershipStub:
    return membership_pb2_grpc.MembershipStub(agent.channel())


def event_kinds(messages: list[object]) -> list[tuple[str, tuple[str, ...]]]:
    kinds = []
    for message in messages:
        assert isinstance(message, pb.WatchEventsResponse)
        event = message.event
        name = pb.EventType.Name(event.type).removeprefix("EVENT_TYPE_")
        subjects = (
            (event.user.name,)
            if event.type == pb.EVENT_TYPE_USER
            else tuple(m.name for m in event.members)
        )
        kinds.append((name, subjects))
    return kinds


def test_every_event_type_reaches_the_watch_streams(cluster: Cluster) -> None:
    observer = cluster.agents["node-1"]
    events = observer.watch("WatchEvents", pb.WatchEventsRequest())
    members = observer.watch("WatchMembers", pb.WatchMembersRequest())
    try:
        # Streams carry what happens after they are subscribed: wait until both are.
        def subscribed() -> bool:
            stub(observer).FireUserEvent(pb.FireUserEventRequest(name="warm-up"), timeout=5)
            return bool(members.snapshot()) and ("USER", ("warm-up",)) in event_kinds(
                events.snapshot()
            )

        assert wait_until(subscribed, timeout=30, interval=0.5)
        joiner = cluster.start(4)
        # An update that reaches the observer before the join is folded into the join
        # (the member arrives with its new tags), so update only once it has joined.
        assert wait_until(
            lambda: ("MEMBER_JOIN", ("node-4",)) in event_kinds(events.snapshot()), timeout=30
        )
        stub(joiner).UpdateTags(pb.UpdateTagsRequest(set={"zone": "z4"}), timeout=5)
        # A leave queued before the update was gossiped replaces it (a newer message
        # about a member invalidates the queued one, as in memberlist): the member
        # leaves only once its update was seen.
        assert wait_until(
            lambda: ("MEMBER_UPDATE", ("node-4",)) in event_kinds(events.snapshot()), timeout=30
        )
        stub(cluster.agents["node-2"]).FireUserEvent(
            pb.FireUserEventRequest(name="deploy", payload=b"v2"), timeout=5
        )
        cluster.agents["node-3"].kill()
        assert joiner.terminate() == 0

        wanted = {
            ("MEMBER_JOIN", ("node-4",)),
            ("MEMBER_UPDATE", ("node-4",)),
            ("USER", ("deploy",)),
            ("MEMBER_FAILED", ("node-3",)),
            ("MEMBER_LEAVE", ("node-4",)),
        }
        assert wait_until(lambda: wanted <= set(event_kinds(events.snapshot())), timeout=40), (
            event_kinds(events.snapshot())
        )
        seen = event_kinds(events.snapshot())
        # A graceful leave is never reported as a failure.
        assert ("MEMBER_FAILED", ("node-4",)) not in seen
    finally:
        events.stop()
        members.stop()

    changes = members.snapshot()
    first = changes[0]
    assert isinstance(first, pb.WatchMembersResponse)
    assert first.change == pb.MEMBER_CHANGE_SNAPSHOT
    assert {m.name for m in first.members} == {"node-1", "node-2", "node-3"}
    final: dict[str, int] = {}
    for change in changes[1:]:
        assert isinstance(change, pb.WatchMembersResponse)
        assert change.change == pb.MEMBER_CHANGE_UPSERT
        for member in change.members:
            final[member.name] = member.status
    assert final["node-4"] == pb.MEMBER_STATUS_LEFT
    assert final["node-3"] == pb.MEMBER_STATUS_FAILED


def test_a_user_event_reaches_every_member_exactly_once(cluster: Cluster) -> None:
    watchers = {
        name: agent.watch("WatchEvents", pb.WatchEventsRequest(types=[pb.EVENT_TYPE_USER]))
        for name, agent in cluster.agents.items()
    }
    try:
        # Streams carry only events that happen after they are subscribed: wait until
        # each one demonstrably receives events before firing the one that counts.
        def ready() -> bool:
            stub(cluster.agents["node-1"]).FireUserEvent(
                pb.FireUserEventRequest(name="warm-up"), timeout=5
            )
            return all(
                any(m.event.user.name == "warm-up" for m in w.snapshot())  # type: ignore[attr-defined]
                for w in watchers.values()
            )

        assert wait_until(ready, timeout=30, interval=0.5)
        answer = stub(cluster.agents["node-3"]).FireUserEvent(
            pb.FireUserEventRequest(name="reload", payload=b"cfg-7"), timeout=5
        )
        assert answer.lamport_time >= 1

        def reloads(name: str) -> list[pb.UserEvent]:
            events = [m.event.user for m in watchers[name].snapshot()]  # type: ignore[attr-defined]
            return [u for u in events if u.name == "reload"]

        assert wait_until(lambda: all(reloads(name) for name in watchers), timeout=20)
        wait_until(lambda: False, timeout=3)  # time for duplicates to show up, if any
        for name in watchers:
            assert [(u.name, u.payload, u.lamport_time) for u in reloads(name)] == [
                ("reload", b"cfg-7", answer.lamport_time)
            ], name
    finally:
        for watcher in watchers.values():
            watcher.stop()


def test_force_leave_moves_a_failed_member_to_left_and_prune_removes_it(
    cluster: Cluster,
) -> None:
    cluster.agents["node-3"].kill()
    assert wait_until(lambda: cluster.statuses("node-1").get("node-3") == "FAILED", timeout=30)
    first = stub(cluster.agents["node-1"])
    first.ForceLeave(pb.ForceLeaveRequest(name="node-3"), timeout=5)
    assert wait_until(
        lambda: all(cluster.statuses(n).get("node-3") == "LEFT" for n in ("node-1", "node-2")),
        timeout=15,
    )
    first.ForceLeave(pb.ForceLeaveRequest(name="node-3", prune=True), timeout=5)
    assert wait_until(
        lambda: all("node-3" not in cluster.statuses(n) for n in ("node-1", "node-2")),
        timeout=15,
    )


def test_force_leave_errors(cluster: Cluster) -> None:
    first = stub(cluster.agents["node-1"])
    with pytest.raises(grpc.RpcError) as unknown:
        first.ForceLeave(pb.ForceLeaveRequest(name="nobody"), timeout=5)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as alive:
        first.ForceLeave(pb.ForceLeaveRequest(name="node-2"), timeout=5)
    assert alive.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_limits_at_their_boundaries(cluster: Cluster) -> None:
    agent = cluster.agents["node-2"]
    membership = stub(agent)
    own = dict(membership.GetLocalMember(pb.GetLocalMemberRequest(), timeout=5).member.tags)
    # Tags: exactly 512 bytes encoded is accepted, one byte more is refused.
    size = {n: len(encode_tags({**own, "pad": "x" * n})) for n in range(300, 520)}
    at_limit = next(n for n, encoded in size.items() if encoded == 512)
    assert size[at_limit + 1] == 513
    membership.UpdateTags(pb.UpdateTagsRequest(set={"pad": "x" * at_limit}), timeout=5)
    with pytest.raises(grpc.RpcError) as tags_over:
        membership.UpdateTags(pb.UpdateTagsRequest(set={"pad": "x" * (at_limit + 1)}), timeout=5)
    assert tags_over.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "512" in (tags_over.value.details() or "")
    # User events: name plus payload at most 512 bytes.
    membership.FireUserEvent(pb.FireUserEventRequest(name="e", payload=b"p" * 511), timeout=5)
    with pytest.raises(grpc.RpcError) as event_over:
        membership.FireUserEvent(pb.FireUserEventRequest(name="e", payload=b"p" * 512), timeout=5)
    assert event_over.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "512" in (event_over.value.details() or "")
    # Filters are validated too.
    with pytest.raises(grpc.RpcError) as bad_filter:
        membership.ListMembers(pb.ListMembersRequest(name_pattern="("), timeout=5)
    assert bad_filter.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_list_members_filters(cluster: Cluster) -> None:
    membership = stub(cluster.agents["node-1"])
    membership.UpdateTags(pb.UpdateTagsRequest(set={"rack": "r1"}), timeout=5)
    assert wait_until(
        lambda: (
            [
                m.name
                for m in stub(cluster.agents["node-2"])
                .ListMembers(pb.ListMembersRequest(tags={"rack": "r[0-9]"}), timeout=5)
                .members
            ]
            == ["node-1"]
        ),
        timeout=15,
    )
    named = membership.ListMembers(pb.ListMembersRequest(name_pattern="node-[23]"), timeout=5)
    assert [m.name for m in named.members] == ["node-2", "node-3"]
    alive = membership.ListMembers(
        pb.ListMembersRequest(statuses=[pb.MEMBER_STATUS_ALIVE]), timeout=5
    )
    assert len(alive.members) == 3


def test_a_restarted_agent_rejoins_from_its_snapshot(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    data_dir = tmp_path / "node-3-data"
    try:
        c.start(1)
        c.start(2)
        c.start(3, "--data-dir", str(data_dir))
        names = {"node-1", "node-2", "node-3"}
        assert wait_until(lambda: c.converged(names), timeout=30)
        c.agents["node-3"].kill()  # no leave: the snapshot still lists its peers
        assert wait_until(lambda: c.statuses("node-1").get("node-3") == "FAILED", timeout=30)
        c.start(3, "--data-dir", str(data_dir), join=False)
        assert wait_until(lambda: c.converged(names), timeout=30), [c.statuses(n) for n in names]
    finally:
        c.stop_all()


def test_a_garbage_snapshot_does_not_stop_the_agent(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "serf").mkdir(parents=True)
    (data_dir / "serf" / "local.snapshot").write_bytes(b"\x00\xffnot a snapshot\nalive: x\n" * 50)
    c = Cluster(tmp_path)
    try:
        agent = c.start(1, "--data-dir", str(data_dir))
        assert agent.members() == {"node-1": "ALIVE"}
        assert "snapshot" in agent.log()
    finally:
        c.stop_all()


def test_join_rpc_and_its_errors(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.start(1)
        second = c.start(2, join=False)
        membership = stub(second)
        with pytest.raises(grpc.RpcError) as nobody:
            membership.Join(pb.JoinRequest(addresses=[f"127.0.0.9:{free_port()}"]), timeout=10)
        assert nobody.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as empty:
            membership.Join(pb.JoinRequest(), timeout=5)
        assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        answer = membership.Join(pb.JoinRequest(addresses=[c.seed]), timeout=10)
        assert answer.contacted == 1
        assert wait_until(lambda: c.converged({"node-1", "node-2"}), timeout=20)
    finally:
        c.stop_all()


def test_leave_rpc_leaves_then_stops_the_agent(cluster: Cluster) -> None:
    leaver = cluster.agents["node-3"]
    stub(leaver).Leave(pb.LeaveRequest(), timeout=30)
    assert leaver.process.wait(timeout=30) == 0
    assert wait_until(lambda: cluster.statuses("node-1").get("node-3") == "LEFT", timeout=15)
    counts = Counter(cluster.statuses("node-2").values())
    assert counts == {"ALIVE": 2, "LEFT": 1}


def test_a_pathological_pattern_does_not_stall_the_agent(cluster: Cluster) -> None:
    membership = stub(cluster.agents["node-1"])
    membership.UpdateTags(pb.UpdateTagsRequest(set={"x": "a" * 60}), timeout=5)
    # Exponential for a backtracking engine; linear for RE2.
    answer = membership.ListMembers(pb.ListMembersRequest(tags={"x": "(.|.)*Z"}), timeout=5)
    assert list(answer.members) == []
    with pytest.raises(grpc.RpcError) as lookahead:
        membership.ListMembers(pb.ListMembersRequest(name_pattern="(?=node)node-1"), timeout=5)
    assert lookahead.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "RE2" in (lookahead.value.details() or "")


def test_a_leave_whose_caller_gives_up_still_completes(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.start(1)
        leaver = c.start(2, "--drain-period", "3")
        assert wait_until(lambda: c.converged({"node-1", "node-2"}), timeout=30)
        with pytest.raises(grpc.RpcError) as impatient:
            stub(leaver).Leave(pb.LeaveRequest(), timeout=1)
        assert impatient.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert leaver.process.wait(timeout=30) == 0
        assert wait_until(lambda: c.statuses("node-1").get("node-2") == "LEFT", timeout=15)
    finally:
        c.stop_all()


def test_list_members_pages_through_the_cluster(cluster: Cluster) -> None:
    membership = stub(cluster.agents["node-2"])
    names: list[str] = []
    token = ""
    for _ in range(10):
        page = membership.ListMembers(
            pb.ListMembersRequest(page_size=1, page_token=token, name_pattern="node-.*"),
            timeout=5,
        )
        names += [m.name for m in page.members]
        token = page.next_page_token
        if not token:
            break
    assert names == ["node-1", "node-2", "node-3"]
    first = membership.ListMembers(pb.ListMembersRequest(page_size=2), timeout=5)
    assert [m.name for m in first.members] == ["node-1", "node-2"]
    # A token only continues the listing it began.
    with pytest.raises(grpc.RpcError) as other_filters:
        membership.ListMembers(
            pb.ListMembersRequest(
                page_size=2, page_token=first.next_page_token, name_pattern="node-3"
            ),
            timeout=5,
        )
    assert other_filters.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (other_filters.value.details() or "")
    rest = membership.ListMembers(
        pb.ListMembersRequest(page_size=2, page_token=first.next_page_token), timeout=5
    )
    assert ([m.name for m in rest.members], rest.next_page_token) == (["node-3"], "")
