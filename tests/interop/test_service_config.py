"""clients/service_config.json: the gRPC service config shipped for other languages.

Two halves. The structure is checked against the gRPC service-config rules that
can be checked offline (the retry-policy fields of gRFC A6, duration strings,
method names that exist in the generated descriptors, no method named twice,
retries only for the idempotent methods, no timeout on the long-lived Watch
streams). Then the file is proved to work: a Python channel created with it
retries an idempotent call that failed with UNAVAILABLE, and does not retry a
non-idempotent one, against a small in-process server that counts attempts.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from controlplane.v1 import (
    keyring_pb2,
    membership_pb2,
    membership_pb2_grpc,
    ring_pb2,
    server_pool_pb2,
)

CONFIG_PATH = Path(__file__).resolve().parents[2] / "clients" / "service_config.json"
CONFIG_TEXT = CONFIG_PATH.read_text(encoding="utf-8")
CONFIG: dict[str, Any] = json.loads(CONFIG_TEXT)

PACKAGE = "controlplane.v1"
DESCRIPTORS = (membership_pb2, server_pool_pb2, ring_pb2, keyring_pb2)
SERVICES = {
    service.full_name: service
    for module in DESCRIPTORS
    for service in module.DESCRIPTOR.services_by_name.values()
}
ALL_METHODS = {
    (service.full_name, method.name) for service in SERVICES.values() for method in service.methods
}
STREAMING = {
    (service.full_name, method.name)
    for service in SERVICES.values()
    for method in service.methods
    if method.server_streaming or method.client_streaming
}

# The methods that may be sent twice without harm: reads and streams of reads.
IDEMPOTENT = {
    (f"{PACKAGE}.{service}", method)
    for service, methods in {
        "Membership": [
            "ListMembers",
            "GetLocalMember",
            "GetCoordinate",
            "GetLeader",
            "WatchMembers",
            "WatchEvents",
            "WatchLeader",
            "GetInfo",
            "GetLeaderHistory",
            "Monitor",
            "WatchQueries",
        ],
        "ServerPool": ["Heartbeat", "FindServer", "ListServers", "ListClients"],
        "Ring": ["GetNode", "GetNodes", "ListNodes", "GetRing", "WatchRing"],
        "Keyring": ["ListKeys"],
    }.items()
    for method in methods
}

DURATION = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]{1,9})?s$")
STATUS_NAMES = set(grpc.StatusCode.__members__)
RETRY_FIELDS = {
    "maxAttempts",
    "initialBackoff",
    "maxBackoff",
    "backoffMultiplier",
    "retryableStatusCodes",
}
METHOD_CONFIG_FIELDS = {
    "name",
    "waitForReady",
    "timeout",
    "maxRequestMessageBytes",
    "maxResponseMessageBytes",
    "retryPolicy",
    "hedgingPolicy",
}
TOP_LEVEL_FIELDS = {
    "loadBalancingConfig",
    "loadBalancingPolicy",
    "methodConfig",
    "retryThrottling",
    "healthCheckConfig",
}


def seconds(duration: str) -> float:
    assert isinstance(duration, str), duration
    assert DURATION.match(duration), f"{duration!r} is not a proto3 JSON duration"
    return float(duration[:-1])


def effective_method_configs() -> dict[tuple[str, str], dict[str, Any]]:
    """Which methodConfig entry applies to each method (exact name first, then service)."""
    exact: dict[tuple[str, str], dict[str, Any]] = {}
    by_service: dict[str, dict[str, Any]] = {}
    for entry in CONFIG["methodConfig"]:
        for name in entry["name"]:
            if name.get("method"):
                exact[(name["service"], name["method"])] = entry
            else:
                by_service[name["service"]] = entry
    chosen = {}
    for service, method in ALL_METHODS:
        entry = exact.get((service, method)) or by_service.get(service)
        if entry is not None:
            chosen[(service, method)] = entry
    return chosen


# --------------------------------------------------------------------- structure


def test_top_level_fields_are_known() -> None:
    assert set(CONFIG) <= TOP_LEVEL_FIELDS, set(CONFIG) - TOP_LEVEL_FIELDS
    assert "loadBalancingPolicy" not in CONFIG  # deprecated in favour of loadBalancingConfig


def test_load_balancing_is_round_robin() -> None:
    policies = CONFIG["loadBalancingConfig"]
    assert isinstance(policies, list)
    assert policies, "loadBalancingConfig must name at least one policy"
    for policy in policies:
        assert isinstance(policy, dict)
        assert len(policy) == 1, "each loadBalancingConfig entry names exactly one policy"
    assert policies[0] == {"round_robin": {}}


def test_every_name_exists_in_the_protos_and_is_named_once() -> None:
    seen: Counter[tuple[str, str]] = Counter()
    for entry in CONFIG["methodConfig"]:
        assert set(entry) <= METHOD_CONFIG_FIELDS, set(entry) - METHOD_CONFIG_FIELDS
        assert isinstance(entry["name"], list)
        assert entry["name"], "a methodConfig entry must name at least one method"
        for name in entry["name"]:
            assert set(name) <= {"service", "method"}, name
            assert name["service"] in SERVICES, f"unknown service {name['service']}"
            if "method" in name:
                assert (name["service"], name["method"]) in ALL_METHODS, name
            seen[(name["service"], name.get("method", ""))] += 1
    assert [key for key, count in seen.items() if count > 1] == []


def test_retry_policies_are_well_formed() -> None:
    policies = [entry["retryPolicy"] for entry in CONFIG["methodConfig"] if "retryPolicy" in entry]
    assert policies
    for entry in CONFIG["methodConfig"]:
        assert not ("retryPolicy" in entry and "hedgingPolicy" in entry)
    for policy in policies:
        assert set(policy) == RETRY_FIELDS, policy
        attempts = policy["maxAttempts"]
        # gRPC requires more than 1 and silently caps anything above 5 at 5.
        assert isinstance(attempts, int)
        assert 2 <= attempts <= 5
        initial, maximum = seconds(policy["initialBackoff"]), seconds(policy["maxBackoff"])
        assert 0 < initial <= maximum
        multiplier = policy["backoffMultiplier"]
        assert isinstance(multiplier, int | float)
        assert multiplier > 0
        codes = policy["retryableStatusCodes"]
        assert isinstance(codes, list)
        assert codes
        assert set(codes) <= STATUS_NAMES
        assert codes == ["UNAVAILABLE"]


def test_retry_throttling_is_well_formed() -> None:
    throttling = CONFIG["retryThrottling"]
    assert set(throttling) == {"maxTokens", "tokenRatio"}
    assert isinstance(throttling["maxTokens"], int)
    assert 0 < throttling["maxTokens"] <= 1000
    assert throttling["tokenRatio"] > 0


def test_only_idempotent_methods_are_retried() -> None:
    effective = effective_method_configs()
    retried = {key for key, entry in effective.items() if "retryPolicy" in entry}
    assert retried == IDEMPOTENT
    assert IDEMPOTENT <= ALL_METHODS


def test_every_call_has_a_timeout_except_the_watch_streams() -> None:
    effective = effective_method_configs()
    assert set(effective) == ALL_METHODS, ALL_METHODS - set(effective)
    for key, entry in effective.items():
        if key in STREAMING:
            # A timeout would end a long-lived Watch stream; callers set their own.
            assert "timeout" not in entry, key
        else:
            assert "timeout" in entry, key
            assert 0 < seconds(entry["timeout"]) <= 60, key


# ---------------------------------------------------------------- the config works


class FlakyMembership(membership_pb2_grpc.MembershipServicer):
    """Fails the first attempt of each method with UNAVAILABLE, then answers."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _attempt(self, method: str) -> int:
        with self._lock:
            self.attempts[method] += 1
            return self.attempts[method]

    def ListMembers(
        self, request: membership_pb2.ListMembersRequest, context: grpc.ServicerContext
    ) -> membership_pb2.ListMembersResponse:
        if self._attempt("ListMembers") == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "first attempt fails")
        return membership_pb2.ListMembersResponse(members=[membership_pb2.Member(name="m-1")])

    def GetLocalMember(
        self, request: membership_pb2.GetLocalMemberRequest, context: grpc.ServicerContext
    ) -> membership_pb2.GetLocalMemberResponse:
        self._attempt("GetLocalMember")
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not retryable")

    def GetLeader(
        self, request: membership_pb2.GetLeaderRequest, context: grpc.ServicerContext
    ) -> membership_pb2.GetLeaderResponse:
        self._attempt("GetLeader")
        context.abort(grpc.StatusCode.UNAVAILABLE, "always unavailable")

    def FireUserEvent(
        self, request: membership_pb2.FireUserEventRequest, context: grpc.ServicerContext
    ) -> membership_pb2.FireUserEventResponse:
        if self._attempt("FireUserEvent") == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "first attempt fails")
        return membership_pb2.FireUserEventResponse(lamport_time=7)

    def WatchMembers(
        self, request: membership_pb2.WatchMembersRequest, context: grpc.ServicerContext
    ) -> Iterator[membership_pb2.WatchMembersResponse]:
        if self._attempt("WatchMembers") == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "first attempt fails")
        yield membership_pb2.WatchMembersResponse(
            change=membership_pb2.MEMBER_CHANGE_SNAPSHOT,
            members=[membership_pb2.Member(name="m-1")],
        )


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyMembership, grpc.Channel]]:
    # Only the methods under test are overridden; the others answer UNIMPLEMENTED.
    servicer = FlakyMembership()  # type: ignore[abstract]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    membership_pb2_grpc.add_MembershipServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}",
        options=[("grpc.service_config", CONFIG_TEXT), ("grpc.enable_retries", 1)],
    )
    try:
        yield servicer, channel
    finally:
        channel.close()
        server.stop(None)


def test_idempotent_call_is_retried_after_unavailable(
    flaky: tuple[FlakyMembership, grpc.Channel],
) -> None:
    servicer, channel = flaky
    stub = membership_pb2_grpc.MembershipStub(channel)

    response = stub.ListMembers(membership_pb2.ListMembersRequest(), timeout=10)

    assert [m.name for m in response.members] == ["m-1"]
    assert servicer.attempts["ListMembers"] == 2


def test_watch_stream_is_retried_before_its_first_message(
    flaky: tuple[FlakyMembership, grpc.Channel],
) -> None:
    servicer, channel = flaky
    stub = membership_pb2_grpc.MembershipStub(channel)

    messages = list(stub.WatchMembers(membership_pb2.WatchMembersRequest(), timeout=10))

    assert [m.change for m in messages] == [membership_pb2.MEMBER_CHANGE_SNAPSHOT]
    assert servicer.attempts["WatchMembers"] == 2


def test_retries_stop_at_max_attempts(flaky: tuple[FlakyMembership, grpc.Channel]) -> None:
    servicer, channel = flaky
    stub = membership_pb2_grpc.MembershipStub(channel)
    policy = next(
        entry["retryPolicy"]
        for entry in CONFIG["methodConfig"]
        if {"service": f"{PACKAGE}.Membership", "method": "GetLeader"} in entry["name"]
    )

    with pytest.raises(grpc.RpcError) as raised:
        stub.GetLeader(membership_pb2.GetLeaderRequest(), timeout=10)

    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts["GetLeader"] == policy["maxAttempts"]


def test_other_codes_are_not_retried(flaky: tuple[FlakyMembership, grpc.Channel]) -> None:
    servicer, channel = flaky
    stub = membership_pb2_grpc.MembershipStub(channel)

    with pytest.raises(grpc.RpcError) as raised:
        stub.GetLocalMember(membership_pb2.GetLocalMemberRequest(), timeout=10)

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert servicer.attempts["GetLocalMember"] == 1


def test_non_idempotent_call_is_not_retried(
    flaky: tuple[FlakyMembership, grpc.Channel],
) -> None:
    servicer, channel = flaky
    stub = membership_pb2_grpc.MembershipStub(channel)

    with pytest.raises(grpc.RpcError) as raised:
        stub.FireUserEvent(membership_pb2.FireUserEventRequest(name="deploy"), timeout=10)

    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts["FireUserEvent"] == 1
