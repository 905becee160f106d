"""Interop: a Node.js @grpc/grpc-js client calls every RPC of a real agent.

Two agents run on loopback: ``node-a`` (127.0.0.1) and ``node-b`` (127.0.0.2,
tagged ``ring=cache`` and ``service_port=11211``), sharing one port number.
tests/interop/node/call_every_rpc.js loads protos/ with @grpc/proto-loader, calls
every unary RPC of Membership, ServerPool and Ring on node-a (plus
Keyring.ListKeys), reads the first message of WatchMembers, WatchEvents,
WatchLeader and WatchRing, calls Membership.Leave last, and prints its answers as
one JSON document. This test judges those answers and compares the ring's
placements with what node-b answers to the Python stubs and with the Python
HashRing built from the snapshot the Node client received.

It needs ``node`` and ``npm ci --prefix tests/interop/node``: without them it
skips, except under CI (``CI=true``), where a missing peer is a failure.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme

from controlplane.ring import HashRing
from controlplane.testing.agents import (
    AgentProcess,
    current_secure_setup,
    free_port,
    start_agent,
    wait_until,
)
from controlplane.v1 import (
    membership_pb2,
    membership_pb2_grpc,
    ring_pb2,
    ring_pb2_grpc,
    server_pool_pb2,
)
from tests.ci import in_ci

pytestmark = [pytest.mark.integration]

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "call_every_rpc.js"
NODE_TIMEOUT_SECONDS = 45
GOSSIP_WAIT_SECONDS = 10.0
HOST_A = "127.0.0.1"
HOST_B = "127.0.0.2"
AGENT_ARGS = ["--profile", "local", "--drain-period", "0"]
SERVICE_PORT = 11211

Json = dict[str, Any]


def missing_peer() -> str | None:
    """Say why the Node.js client cannot run, or return None when it can."""
    if shutil.which("node") is None:
        return "the `node` executable is not on PATH"
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            return (
                f"tests/interop/node/node_modules/{package} is missing; "
                "run `npm ci --prefix tests/interop/node`"
            )
    return None


@dataclass
class Observed:
    """What the Node client printed and what the Python side saw around it."""

    document: Json
    agent_a: AgentProcess
    agent_b: AgentProcess
    exit_status_a: int | None = None
    a_status_on_b: str | None = None
    a_tags_on_b: dict[str, str] = field(default_factory=dict)
    cache_nodes_on_b: dict[str, str] = field(default_factory=dict)
    registered_checksum_on_b: int | None = None
    registered_nodes_on_b: dict[str, str] = field(default_factory=dict)
    registered_replicas_on_b: list[str] = field(default_factory=list)

    @property
    def calls(self) -> dict[str, Json]:
        calls: dict[str, Json] = self.document["calls"]
        return calls

    def call(self, label: str) -> Json:
        assert label in self.calls, f"the Node client did not report {label}"
        return self.calls[label]

    def ok(self, label: str) -> Json:
        call = self.call(label)
        assert call["code"] == "OK", f"{label}: {call['code']} {call.get('message')}"
        response: Json = call["response"]
        return response


class NodeRun:
    """Starts the agents and runs the Node client once, on first use."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._agents: list[AgentProcess] = []
        self._observed: Observed | None = None

    def result(self) -> Observed:
        """The run's observations; skips or (under CI) fails without the Node peer.

        Called from each test body rather than inside a fixture so that, under CI, a
        missing peer is reported as a failed test and not as a fixture error.
        """
        reason = missing_peer()
        if reason is not None:
            if in_ci():
                pytest.fail(f"CI=true but the Node.js gRPC client cannot run: {reason}")
            pytest.skip(f"Node.js gRPC client unavailable: {reason}")
        if self._observed is None:
            self._observed = self._run()
        return self._observed

    def close(self) -> None:
        for agent in self._agents:
            agent.kill()

    def _run(self) -> Observed:
        port = free_port(HOST_A, HOST_B)
        a = start_agent("node-a", host=HOST_A, port=port, args=AGENT_ARGS, log_dir=self._log_dir)
        self._agents.append(a)
        b = start_agent(
            "node-b",
            host=HOST_B,
            port=port,
            args=[
                *AGENT_ARGS,
                "--join",
                a.target,
                "--tag",
                "ring=cache",
                "--tag",
                f"service_port={SERVICE_PORT}",
            ],
            log_dir=self._log_dir,
        )
        self._agents.append(b)
        assert wait_until(lambda: _alive(a) == _alive(b) == {"node-a", "node-b"}, 15), (
            f"agents did not see each other: {a.members()} / {b.members()}"
        )
        completed = subprocess.run(
            ["node", str(SCRIPT), a.target],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=NODE_TIMEOUT_SECONDS,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        observed = Observed(json.loads(completed.stdout), a, b)
        _observe_from_python(observed)
        return observed


def _alive(agent: AgentProcess) -> set[str]:
    try:
        return {name for name, status in agent.members().items() if status == "ALIVE"}
    except grpc.RpcError:
        return set()


def _observe_from_python(observed: Observed) -> None:
    """After the Node run: node-a left and stopped; ask node-b with the Python stubs."""
    document, a, b = observed.document, observed.agent_a, observed.agent_b
    try:
        observed.exit_status_a = a.process.wait(15)
    except subprocess.TimeoutExpired:
        observed.exit_status_a = None
    wait_until(lambda: b.members().get("node-a") == "LEFT", GOSSIP_WAIT_SECONDS)
    with b.channel() as channel:
        members = membership_pb2_grpc.MembershipStub(channel).ListMembers(
            membership_pb2.ListMembersRequest(), timeout=5
        )
        for member in members.members:
            if member.name == "node-a":
                observed.a_status_on_b = membership_pb2.MemberStatus.Name(member.status)
                observed.a_tags_on_b = dict(member.tags)
        ring = ring_pb2_grpc.RingStub(channel)
        for key in document["ring_keys"]:
            answer = ring.GetNode(
                ring_pb2.GetNodeRequest(ring=document["member_ring"], key=key), timeout=2
            )
            observed.cache_nodes_on_b[key] = answer.node.id
        expected = int(
            document["calls"]["Ring.GetRing[node-interop]"]["response"]["ring"]["checksum"]
        )
        registered = document["registered_ring"]

        def replicated() -> bool:
            listed = ring.ListNodes(ring_pb2.ListNodesRequest(ring=registered), timeout=2)
            observed.registered_checksum_on_b = listed.checksum
            return listed.checksum == expected

        if wait_until(replicated, GOSSIP_WAIT_SECONDS):
            for key in document["ring_keys"]:
                answer = ring.GetNode(ring_pb2.GetNodeRequest(ring=registered, key=key), timeout=2)
                observed.registered_nodes_on_b[key] = answer.node.id
            replicas = ring.GetNodes(
                ring_pb2.GetNodesRequest(ring=registered, key="user:1", count=5), timeout=2
            )
            observed.registered_replicas_on_b = [node.id for node in replicas.nodes]


@pytest.fixture(scope="module")
def node_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRun]:
    run = NodeRun(tmp_path_factory.mktemp("node-client"))
    try:
        yield run
    finally:
        run.close()


# ---------------------------------------------------------------------- helpers


def member_names(members: list[Json]) -> list[str]:
    return [member["name"] for member in members]


def duration_seconds(duration: Json) -> float:
    return int(duration["seconds"]) + int(duration["nanos"]) / 1e9


def assert_status(call: Json, code: str, *, field_name: str | None = None) -> None:
    """The call failed with `code`, a google.rpc.Status and (if given) a field violation."""
    assert call["code"] == code, f"{call['rpc']}: {call['code']} {call.get('message')}"
    assert call["message"]
    status = call["status"]
    assert status is not None, f"{call['rpc']}: no grpc-status-details-bin trailer"
    assert status["message"] == call["message"]
    infos = [d for d in status["details"] if d["type"] == "google.rpc.ErrorInfo"]
    assert len(infos) == 1
    assert infos[0]["domain"] == "controlplane"
    assert infos[0]["reason"]
    if field_name is not None:
        bad = [d for d in status["details"] if d["type"] == "google.rpc.BadRequest"]
        assert len(bad) == 1, status
        assert [v["field"] for v in bad[0]["field_violations"]] == [field_name]
        assert all(v["description"] for v in bad[0]["field_violations"])


def server_addresses(servers: list[Json]) -> list[str]:
    return [server["address"] for server in servers]


# ------------------------------------------------------------------------ tests


def test_every_rpc_was_called_and_no_answer_is_unknown(node_run: NodeRun) -> None:
    observed = node_run.result()
    called = {call["rpc"] for call in observed.calls.values()}
    for pb in (membership_pb2, server_pool_pb2, ring_pb2):
        for service in pb.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert f"{service.name}.{method.name}" in called, method.full_name
    assert "Keyring.ListKeys" in called
    codes = {label: call["code"] for label, call in observed.calls.items()}
    assert not {label for label, code in codes.items() if code in ("UNKNOWN", "INTERNAL")}, codes
    # ServerPool has no streams; the client says so instead of calling one.
    assert observed.call("ServerPool.(streams)")["code"] == "NOT_CALLED"
    assert not any(
        method.server_streaming
        for method in server_pool_pb2.DESCRIPTOR.services_by_name["ServerPool"].methods
    )


def test_client_uses_the_pinned_packages(node_run: NodeRun) -> None:
    observed = node_run.result()
    pins = json.loads((NODE_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]
    versions = observed.document["versions"]
    assert versions["@grpc/grpc-js"] == pins["@grpc/grpc-js"]
    assert versions["@grpc/proto-loader"] == pins["@grpc/proto-loader"]


def test_members_and_local_member(node_run: NodeRun) -> None:
    observed = node_run.result()
    port = observed.agent_a.port
    members = observed.ok("Membership.ListMembers")["members"]
    assert member_names(members) == ["node-a", "node-b"]
    by_name = {member["name"]: member for member in members}
    assert {m["status"] for m in members} == {"MEMBER_STATUS_ALIVE"}
    assert (by_name["node-a"]["address"], by_name["node-a"]["port"]) == (HOST_A, port)
    assert (by_name["node-b"]["address"], by_name["node-b"]["port"]) == (HOST_B, port)
    assert by_name["node-b"]["tags"]["ring"] == "cache"
    assert by_name["node-b"]["tags"]["service_port"] == str(SERVICE_PORT)
    assert by_name["node-a"]["tags"]["role"] == "server"
    assert int(by_name["node-a"]["incarnation"]) >= 1
    protocol = by_name["node-a"]["protocol"]
    assert protocol["protocol_min"] <= protocol["protocol_current"] <= protocol["protocol_max"]

    local = observed.ok("Membership.GetLocalMember")["member"]
    assert observed.document["local_member"] == local["name"] == "node-a"
    assert (local["address"], local["port"]) == (HOST_A, port)

    own = observed.ok("Membership.GetCoordinate")
    assert own["node"] == "node-a"
    assert len(own["coordinate"]["vec"]) == 8
    assert 0 < own["coordinate"]["error"] <= 1.5
    assert_status(observed.call("Membership.GetCoordinate[unknown]"), "NOT_FOUND")

    tagged = observed.ok("Membership.ListMembers[tags ring=cache]")["members"]
    assert member_names(tagged) == ["node-b"]
    mine = observed.ok("Membership.ListMembers[alive, local name]")["members"]
    assert member_names(mine) == ["node-a"]
    assert_status(
        observed.call("Membership.ListMembers[bad pattern]"),
        "INVALID_ARGUMENT",
        field_name="name_pattern",
    )


def test_watch_members_starts_with_a_snapshot(node_run: NodeRun) -> None:
    observed = node_run.result()
    call = observed.call("Membership.WatchMembers")
    assert call["code"] == "OK"
    assert call.get("cancelled_by_client") is True
    first = call["messages"][0]
    assert first["change"] == "MEMBER_CHANGE_SNAPSHOT"
    assert member_names(first["members"]) == ["node-a", "node-b"]
    assert {m["status"] for m in first["members"]} == {"MEMBER_STATUS_ALIVE"}


def test_join_contacts_the_other_member(node_run: NodeRun) -> None:
    observed = node_run.result()
    call = observed.call("Membership.Join")
    assert call["request"]["addresses"] == [observed.agent_b.target]
    assert observed.ok("Membership.Join")["contacted"] == 1
    assert_status(
        observed.call("Membership.Join[no addresses]"), "INVALID_ARGUMENT", field_name="addresses"
    )


def test_update_tags_sets_then_deletes_and_gossips(node_run: NodeRun) -> None:
    observed = node_run.result()
    before = observed.ok("Membership.GetLocalMember")["member"]
    after = observed.ok("Membership.UpdateTags")["member"]
    assert after["name"] == "node-a"
    assert after["tags"]["lang"] == "node"
    assert "scratch" not in after["tags"]  # deletions apply after sets
    assert after["tags"]["role"] == before["tags"]["role"] == "server"
    assert int(after["incarnation"]) > int(before["incarnation"])
    # The other agent learnt the new tag through gossip.
    assert observed.a_tags_on_b.get("lang") == "node"


def test_user_events_have_growing_lamport_times_and_reach_the_watcher(node_run: NodeRun) -> None:
    observed = node_run.result()
    name = observed.document["user_event"]
    fired = observed.call("Membership.FireUserEvent[all fired while watching]")["lamport_times"]
    assert fired, "no user event was fired"
    times = [int(t) for t in fired]
    assert times == sorted(set(times))
    assert times[0] >= 1
    assert int(observed.ok("Membership.FireUserEvent")["lamport_time"]) == times[0]

    watch = observed.call("Membership.WatchEvents")
    assert watch["code"] == "OK", watch
    event = watch["messages"][0]["event"]
    assert event["type"] == "EVENT_TYPE_USER"
    assert event["members"] == []
    user = event["user"]
    assert user["name"] == name
    assert int(user["lamport_time"]) in times
    index = times.index(int(user["lamport_time"]))
    assert base64.b64decode(user["payload"]) == f"payload-{index}".encode()
    assert user["coalesce"] is False

    assert_status(
        observed.call("Membership.FireUserEvent[empty name]"), "INVALID_ARGUMENT", field_name="name"
    )


def test_force_leave_errors(node_run: NodeRun) -> None:
    observed = node_run.result()
    assert_status(observed.call("Membership.ForceLeave"), "NOT_FOUND")
    assert "node-interop-no-such-member" in observed.call("Membership.ForceLeave")["message"]
    assert_status(
        observed.call("Membership.ForceLeave[empty name]"), "INVALID_ARGUMENT", field_name="name"
    )
    assert_status(observed.call("Membership.ForceLeave[alive member]"), "FAILED_PRECONDITION")


def test_leader_info_and_keyring_answers(node_run: NodeRun) -> None:
    """Leader RPCs and GetInfo answer (no leader yet right after start: members wait a lease);
    the keyring answers FAILED_PRECONDITION because these agents do not encrypt."""
    observed = node_run.result()
    leader_status = observed.ok("Membership.GetLeader")
    # Both agents are servers with the default rank 0: eligible, ordered by name.
    assert [m["name"] for m in leader_status["ranked"]] == ["node-a", "node-b"]
    history = observed.ok("Membership.GetLeaderHistory")["changes"]
    assert all(c["cause"] in ("elected", "learned", "ended") for c in history)
    info = observed.call("Membership.GetInfo")
    assert info["code"] == "OK"
    assert info["response"]["gossip"]["alive"] >= 1
    monitor = observed.call("Membership.Monitor")
    assert monitor["code"] == "OK", monitor
    assert monitor["messages"][0]["level"] in ("debug", "info", "warning", "error")
    assert_status(
        observed.call("Membership.Monitor[bad level]"), "INVALID_ARGUMENT", field_name="log_level"
    )
    leader = observed.call("Membership.WatchLeader")
    assert leader["code"] == "OK"
    assert leader["messages"], "WatchLeader sent nothing"
    assert_status(observed.call("Keyring.ListKeys"), "FAILED_PRECONDITION")
    assert "--encrypt" in observed.call("Keyring.ListKeys")["message"]


def test_a_query_is_watched_answered_and_collected(node_run: NodeRun) -> None:
    observed = node_run.result()
    watched = observed.call("Membership.WatchQueries")
    assert watched["code"] == "OK", watched
    query = watched["messages"][0]
    assert (query["name"], query["origin"]) == ("node-interop-query", "node-a")
    assert base64.b64decode(query["payload"]) == b"ping"
    assert duration_seconds(query["remaining"]) <= 3
    observed.ok("Membership.RespondQuery")
    asked = observed.call("Membership.Query")
    assert asked["code"] == "OK", asked
    assert asked.get("ended_by_server"), asked
    messages = asked["messages"]
    assert messages[0]["body"] == "dispatched"
    assert messages[-1]["body"] == "done"
    assert [m["ack"]["from"] for m in messages if m["body"] == "ack"] == ["node-a"]
    responses = [m["response"] for m in messages if m["body"] == "response"]
    assert [(r["from"], base64.b64decode(r["payload"])) for r in responses] == [("node-a", b"pong")]
    assert (messages[-1]["done"]["acks"], messages[-1]["done"]["responses"]) == (1, 1)
    assert_status(observed.call("Membership.RespondQuery[again]"), "FAILED_PRECONDITION")
    assert_status(
        observed.call("Membership.Query[relay factor 9]"),
        "INVALID_ARGUMENT",
        field_name="relay_factor",
    )


def test_heartbeat_lists_servers_and_interval(node_run: NodeRun) -> None:
    observed = node_run.result()
    a, b = observed.agent_a, observed.agent_b
    heartbeat = observed.ok("ServerPool.Heartbeat")
    assert sorted(server_addresses(heartbeat["servers"])) == sorted([a.target, b.target])
    assert {s["name"] for s in heartbeat["servers"]} == {"node-a", "node-b"}
    for server in heartbeat["servers"]:
        assert server["draining"] is False
        assert (server["api_version"]["major"], server["api_version"]["minor"]) == (1, 0)
    assert heartbeat["num_nodes"] == 2
    interval = duration_seconds(heartbeat["heartbeat_interval"])
    assert 0 < interval <= 600
    leader = observed.call("Membership.GetLeader").get("response", {}).get("leader")
    if not leader:
        assert heartbeat["leader_address"] == ""

    clients = observed.ok("ServerPool.ListClients")["clients"]
    mine = [c for c in clients if c["client_id"] == observed.document["client_id"]]
    assert len(mine) == 1
    assert mine[0]["metadata"] == {"lang": "node"}
    assert mine[0]["peer"].startswith(f"ipv4:{HOST_A}:")
    assert (mine[0]["api_version"]["major"], mine[0]["api_version"]["minor"]) == (1, 0)
    assert 0 <= duration_seconds(mine[0]["since_last_heartbeat"]) < 30

    assert_status(
        observed.call("ServerPool.Heartbeat[empty client_id]"),
        "INVALID_ARGUMENT",
        field_name="client_id",
    )


def test_server_pool_round_trip(node_run: NodeRun) -> None:
    observed = node_run.result()
    heartbeat = observed.ok("ServerPool.Heartbeat")
    refreshed = observed.ok("ServerPool.RefreshServerLists")
    # The pool keeps every compatible server (in an order of its own: it shuffles).
    assert sorted(server_addresses(refreshed["servers"])) == sorted(
        server_addresses(heartbeat["servers"])
    )
    assert refreshed["filtered_out"] == []
    assert observed.ok("ServerPool.SetBackupServers")["num_backups"] == 1

    first, second = server_addresses(refreshed["servers"])
    added = observed.ok("ServerPool.AddServer")
    assert (added["known"], added["incompatible"]) == (False, False)
    assert server_addresses(added["servers"]) == [first, second, "127.0.0.1:2"]
    updated = observed.ok("ServerPool.AddServer[known]")
    assert (updated["known"], updated["incompatible"]) == (True, False)
    assert server_addresses(updated["servers"]) == [first, second, "127.0.0.1:3"]
    assert_status(
        observed.call("ServerPool.AddServer[no address]"),
        "INVALID_ARGUMENT",
        field_name="server.address",
    )
    assert observed.ok("ServerPool.RemoveServer") == {"removed": True, "num_servers": 3}
    assert observed.ok("ServerPool.RemoveServer[again]") == {"removed": False, "num_servers": 3}
    head = observed.ok("ServerPool.FindServer")
    assert head["server"]["address"] == first
    assert head["is_backup"] is False
    failed = observed.ok("ServerPool.NotifyFailedServer")
    assert observed.call("ServerPool.NotifyFailedServer")["request"]["address"] == first
    assert failed == {"rotated": True, "ejected": False}
    after = observed.ok("ServerPool.FindServer[after failure]")
    assert after["server"]["address"] == second
    assert after["is_backup"] is False

    listed = observed.ok("ServerPool.ListServers")
    assert server_addresses(listed["primaries"]) == [second, first]
    assert server_addresses(listed["backups"]) == ["127.0.0.1:1"]
    assert [s["name"] for s in listed["backups"]] == ["node-interop-backup"]
    assert listed["ejected"] == []
    assert listed["offline"] is False
    assert listed["num_nodes"] == heartbeat["num_nodes"] == 2
    assert listed["leader_address"] == ""

    rebalanced = observed.ok("ServerPool.RebalanceServers")
    assert rebalanced["offline"] is False  # both agents answer the health ping
    assert sorted(server_addresses(rebalanced["servers"])) == sorted([first, second])
    assert duration_seconds(rebalanced["next_rebalance"]) > 0
    relisted = observed.ok("ServerPool.ListServers[after rebalance]")
    assert server_addresses(relisted["primaries"]) == server_addresses(rebalanced["servers"])
    assert relisted["offline"] is False

    assert_status(observed.call("ServerPool.NotifyFailedServer[unknown pool]"), "NOT_FOUND")
    assert_status(observed.call("ServerPool.FindServer[unknown pool]"), "NOT_FOUND")


def test_membership_ring(node_run: NodeRun) -> None:
    observed = node_run.result()
    ring_name = observed.document["member_ring"]
    node_id = f"{HOST_B}:{SERVICE_PORT}"
    listed = observed.ok("Ring.ListNodes")
    assert [n["id"] for n in listed["nodes"]] == [node_id]
    node = listed["nodes"][0]
    assert (node["address"], node["port"], node["weight"]) == (HOST_B, SERVICE_PORT, 1)
    assert node["source"] == "RING_NODE_SOURCE_MEMBERSHIP"
    assert node["member_name"] == "node-b"

    snapshot = observed.ok("Ring.GetRing")["ring"]
    assert snapshot["name"] == ring_name
    assert snapshot["checksum"] == listed["checksum"]
    assert snapshot["version"] == listed["version"]
    assert int(snapshot["version"]) >= 1
    assert int(snapshot["checksum"]) == HashRing({node_id: 1}).checksum

    watch = observed.call("Ring.WatchRing")
    assert watch["code"] == "OK"
    assert watch["messages"][0]["ring"] == snapshot

    for key in observed.document["ring_keys"]:
        answer = observed.ok(f"Ring.GetNode[{ring_name} {key}]")
        assert answer["node"]["id"] == observed.cache_nodes_on_b[key] == node_id
        assert answer["version"] == snapshot["version"]
    replicas = observed.ok("Ring.GetNodes")["nodes"]
    assert [n["id"] for n in replicas] == [node_id]  # fewer than asked: one node

    assert_status(observed.call("Ring.GetNodes[count 0]"), "INVALID_ARGUMENT", field_name="count")
    assert_status(observed.call("Ring.GetNode[empty ring]"), "FAILED_PRECONDITION")
    assert_status(observed.call("Ring.RemoveNode[membership node]"), "FAILED_PRECONDITION")


def test_registered_ring_places_keys_like_python_and_the_other_agent(node_run: NodeRun) -> None:
    observed = node_run.result()
    document = observed.document
    ring_name = document["registered_ring"]
    wanted = {f"{n['address']}:{n['port']}": n for n in document["registered_nodes"]}

    versions = []
    for node_id, node in wanted.items():
        added = observed.ok(f"Ring.AddNode[{node_id}]")
        assert added["node"]["id"] == node_id
        assert added["node"]["weight"] == node["weight"]
        assert added["node"]["metadata"] == node["metadata"]
        assert added["node"]["source"] == "RING_NODE_SOURCE_REGISTERED"
        assert added["node"]["member_name"] == ""
        versions.append(int(added["version"]))
    extra = observed.ok("Ring.AddNode")
    assert extra["node"]["id"] == document["removed_node"]
    versions.append(int(extra["version"]))
    removed = observed.ok("Ring.RemoveNode")
    versions.append(int(removed["version"]))
    assert versions == sorted(set(versions)), versions
    assert_status(observed.call("Ring.RemoveNode[again]"), "NOT_FOUND")
    assert_status(
        observed.call("Ring.AddNode[no address]"), "INVALID_ARGUMENT", field_name="address"
    )

    snapshot = observed.ok(f"Ring.GetRing[{ring_name}]")["ring"]
    assert snapshot["name"] == ring_name
    assert int(snapshot["version"]) == versions[-1]
    assert {n["id"]: n["weight"] for n in snapshot["nodes"]} == {
        node_id: node["weight"] for node_id, node in wanted.items()
    }
    assert [n["id"] for n in snapshot["nodes"]] == sorted(wanted)

    # A client-side ring built from the snapshot agrees with the agent on every key.
    local = HashRing({n["id"]: n["weight"] for n in snapshot["nodes"]})
    assert local.checksum == int(snapshot["checksum"])
    node_answers = {
        key: observed.ok(f"Ring.GetNode[{ring_name} {key}]")["node"]["id"]
        for key in document["ring_keys"]
    }
    assert node_answers == {key: local.get_node(key) for key in document["ring_keys"]}
    assert len(set(node_answers.values())) > 1, "the keys should spread over several nodes"

    replicas = [n["id"] for n in observed.ok(f"Ring.GetNodes[{ring_name}]")["nodes"]]
    assert replicas == local.get_nodes("user:1", 5)
    assert replicas[0] == node_answers["user:1"]
    assert sorted(replicas) == sorted(wanted)

    # The registrations were replicated: node-b (asked from Python) places keys alike.
    assert observed.registered_checksum_on_b == int(snapshot["checksum"])
    assert observed.registered_nodes_on_b == node_answers
    assert observed.registered_replicas_on_b == replicas


def test_leave_is_last_and_the_agent_leaves_gracefully(node_run: NodeRun) -> None:
    observed = node_run.result()
    assert list(observed.calls)[-1] == "Membership.Leave"
    assert observed.ok("Membership.Leave") == {}
    assert observed.exit_status_a == 0, observed.agent_a.log()
    assert observed.a_status_on_b == "MEMBER_STATUS_LEFT"


def test_a_node_client_calls_over_mtls(tmp_path: Path) -> None:
    """grpc-js presents a client certificate to an agent started with verify_incoming,
    and is refused at the handshake without one."""
    if current_secure_setup() is not None:
        pytest.skip("sets up its own TLS; --secure-agents does not apply")
    reason = missing_peer()
    if reason is not None:
        if in_ci():
            pytest.fail(f"CI=true but the Node.js gRPC client cannot run: {reason}")
        pytest.skip(f"Node.js gRPC client unavailable: {reason}")
    authority, stranger = trustme.CA(), trustme.CA()
    ca = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca))
    files: dict[str, tuple[str, str]] = {}
    for stem, issuer, names in (
        ("agent", authority, ("server.controlplane",)),
        ("client", authority, ("client.controlplane",)),
        ("stranger", stranger, ("client.controlplane",)),
    ):
        issued = issuer.issue_cert(*names)
        cert, key = tmp_path / f"{stem}.pem", tmp_path / f"{stem}-key.pem"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        files[stem] = (str(cert), str(key))
    args = [
        *AGENT_ARGS,
        "--tls-ca-file", str(ca),
        "--tls-cert-file", files["agent"][0],
        "--tls-key-file", files["agent"][1],
        "--verify-incoming",
    ]  # fmt: skip
    agent = start_agent("node-mtls", args=args, log_dir=tmp_path, wait=False)

    def node_call(stem: str) -> Json:
        completed = subprocess.run(
            ["node", str(NODE_DIR / "mtls_call.js"), agent.target, str(ca), *files[stem],
             "server.controlplane"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=NODE_TIMEOUT_SECONDS,
            check=False,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr
        document: Json = json.loads(completed.stdout)
        return document

    try:
        assert wait_until(lambda: node_call("client")["code"] == "OK", 20), agent.log()
        assert node_call("client")["members"] == ["node-mtls"]
        assert node_call("stranger")["code"] == "UNAVAILABLE"
    finally:
        agent.kill()
