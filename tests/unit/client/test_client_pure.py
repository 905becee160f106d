"""Client logic without a network: error decoding, the idempotency table, watch diffs."""

from __future__ import annotations

import grpc
import pytest

from controlplane.client.common import classify
from controlplane.client.idempotency import IDEMPOTENT, is_idempotent
from controlplane.client.status import (
    decode_status_details,
    encode_status_details,
    error_from_status,
)
from controlplane.client.views import (
    LeaderTracker,
    MemberChangeKind,
    MemberView,
    RingTracker,
    UserEventDeduper,
)
from controlplane.errors import (
    ControlPlaneError,
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from controlplane.pool import Server
from controlplane.v1 import membership_pb2, ring_pb2

READS = {
    "ListMembers", "GetLocalMember", "GetLeader", "FindServer", "ListServers", "ListClients",
    "GetNode", "GetNodes", "ListNodes", "GetRing", "Heartbeat",
    "WatchMembers", "WatchEvents", "WatchLeader", "WatchRing",
}  # fmt: skip
WRITES = {
    "Join", "Leave", "UpdateTags", "ForceLeave", "FireUserEvent", "AddNode", "RemoveNode",
    "NotifyFailedServer", "RefreshServerLists", "SetBackupServers", "RebalanceServers",
}  # fmt: skip


def test_idempotency_table_names_every_rpc_explicitly() -> None:
    by_method = {name.split("/")[1]: value for name, value in IDEMPOTENT.items()}
    assert set(READS) <= {m for m, v in by_method.items() if v}
    assert set(WRITES) <= {m for m, v in by_method.items() if not v}
    assert is_idempotent("/controlplane.v1.Ring/GetNode")
    assert not is_idempotent("/controlplane.v1.Ring/AddNode")
    assert not is_idempotent("Membership/Unknown")


def test_invalid_argument_carries_field_violations() -> None:
    trailer = encode_status_details(
        3, "bad", [FieldViolation("name_pattern", "is not a valid regular expression")], "INVALID"
    )
    decoded = decode_status_details(trailer)
    assert decoded is not None
    assert decoded.reason == "INVALID"
    assert decoded.domain == "controlplane"
    error = error_from_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        "bad",
        [("grpc-status-details-bin", trailer)],
        method="Membership/ListMembers",
        server="10.0.0.1:7946",
    )
    assert isinstance(error, InvalidArgument)
    assert error.violations == (
        FieldViolation("name_pattern", "is not a valid regular expression"),
    )
    assert "Membership/ListMembers on 10.0.0.1:7946" in str(error)
    assert "violations" in str(error)  # says what to do


def test_codes_map_to_the_shared_taxonomy() -> None:
    assert isinstance(error_from_status(grpc.StatusCode.NOT_FOUND, "no such node"), NotFound)
    unknown = error_from_status(grpc.StatusCode.DATA_LOSS, "odd")
    assert type(unknown) is ControlPlaneError
    assert "DATA_LOSS" in str(unknown)
    assert decode_status_details(b"\xff\xff not a status") is None


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, trailers: tuple[tuple[str, bytes], ...] = ()) -> None:
        self._code, self._trailers = code, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "connection reset"

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:  # type: ignore[override]
        return self._trailers


SERVER = Server("a", "127.0.0.1:7946")


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_transport_failures_retry_reads_only(code: grpc.StatusCode) -> None:
    read = classify(_FakeRpcError(code), "Ring/GetNode", SERVER, deadline_passed=False)
    assert read.retry
    assert read.server_failed
    write = classify(_FakeRpcError(code), "Ring/AddNode", SERVER, deadline_passed=False)
    assert not write.retry
    assert write.server_failed
    assert isinstance(write.error, Unavailable)
    assert "MAY OR MAY NOT" in str(write.error)
    late = classify(_FakeRpcError(code), "Ring/GetNode", SERVER, deadline_passed=True)
    assert not late.retry
    assert isinstance(late.error, DeadlineExceeded)


def test_answers_from_the_agent_are_never_retried() -> None:
    trailer = encode_status_details(14, "none of 1 addresses answered", reason="UNAVAILABLE")
    verdict = classify(
        _FakeRpcError(grpc.StatusCode.UNAVAILABLE, (("grpc-status-details-bin", trailer),)),
        "Membership/ListMembers",
        SERVER,
        deadline_passed=False,
    )
    assert not verdict.retry
    assert not verdict.server_failed
    found = classify(
        _FakeRpcError(grpc.StatusCode.NOT_FOUND), "Ring/GetNode", SERVER, deadline_passed=False
    )
    assert not found.retry
    assert isinstance(found.error, NotFound)


def member(
    name: str,
    status: membership_pb2.MemberStatus.ValueType = membership_pb2.MEMBER_STATUS_ALIVE,
    **tags: str,
) -> membership_pb2.Member:
    return membership_pb2.Member(
        name=name, address="127.0.0.1", port=7946, status=status, tags=tags
    )


def test_member_view_emits_each_change_once_across_a_resume() -> None:
    view = MemberView()
    (first,) = view.snapshot([member("a"), member("b")], resumed=False)
    assert first.kind is MemberChangeKind.SNAPSHOT
    assert len(first.members) == 2
    assert view.upsert([member("b")]) == []  # no change, nothing emitted
    (changed,) = view.upsert([member("b", role="x")])
    assert [m.name for m in changed.members] == ["b"]
    # A resumed stream's snapshot: a failed, c new, b unchanged, nothing removed.
    updates = view.snapshot(
        [member("a", membership_pb2.MEMBER_STATUS_FAILED), member("b", role="x"), member("c")],
        resumed=True,
    )
    assert [(u.kind, [m.name for m in u.members], u.resumed) for u in updates] == [
        (MemberChangeKind.UPSERT, ["a", "c"], True)
    ]
    (removed,) = view.snapshot([member("b", role="x"), member("c")], resumed=True)
    assert removed.kind is MemberChangeKind.REMOVED
    assert [m.name for m in removed.members] == ["a"]
    assert view.remove([member("a")]) == []
    assert set(view.members) == {"b", "c"}


def test_ring_tracker_ignores_a_new_version_of_the_same_nodes() -> None:
    tracker = RingTracker()
    node = ring_pb2.RingNode(id="10.0.0.1:80", address="10.0.0.1", port=80, weight=1)
    assert tracker.accept(ring_pb2.RingSnapshot(version=1, checksum=7, nodes=[node]), resumed=False)
    assert (
        tracker.accept(ring_pb2.RingSnapshot(version=9, checksum=7, nodes=[node]), resumed=True)
        is None
    )
    assert tracker.current is not None
    assert tracker.current.version == 9
    update = tracker.accept(ring_pb2.RingSnapshot(version=10, checksum=8), resumed=True)
    assert update is not None
    assert update.resumed


def test_leader_tracker_and_user_event_dedupe() -> None:
    leaders = LeaderTracker()
    assert leaders.accept(None, resumed=False) is not None
    assert leaders.accept(None, resumed=True) is None
    leader = membership_pb2.Leader(name="a", address="x:1", epoch=3)
    assert leaders.accept(leader, resumed=False) is not None
    assert (
        leaders.accept(membership_pb2.Leader(name="a", address="x:1", epoch=3), resumed=True)
        is None
    )
    dedupe = UserEventDeduper(capacity=2)
    event = membership_pb2.Event(
        type=membership_pb2.EVENT_TYPE_USER,
        user=membership_pb2.UserEvent(name="deploy", lamport_time=4),
    )
    assert dedupe.first_time(event)
    assert not dedupe.first_time(event)
    join = membership_pb2.Event(type=membership_pb2.EVENT_TYPE_MEMBER_JOIN)
    assert dedupe.first_time(join)
    assert dedupe.first_time(join)


def test_the_servers_heartbeat_interval_is_respected_unless_overridden() -> None:
    from google.protobuf.duration_pb2 import Duration

    from controlplane.client.common import ClientOptions, heartbeat_interval
    from controlplane.v1 import server_pool_pb2

    response = server_pool_pb2.HeartbeatResponse(heartbeat_interval=Duration(seconds=17))
    assert heartbeat_interval(response, ClientOptions()) == 17
    assert heartbeat_interval(response, ClientOptions(heartbeat_interval_override=0.5)) == 0.5
    tiny = server_pool_pb2.HeartbeatResponse(heartbeat_interval=Duration(nanos=1000))
    assert heartbeat_interval(tiny, ClientOptions()) == 1.0  # floor
