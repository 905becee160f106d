"""Prometheus metrics scraped from real agents: a three-agent cluster where one agent
is killed and comes back, RPCs answered and refused, and the listener's edges."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path

import grpc
import pytest

from controlplane.testing.agents import (
    AgentProcess,
    free_port,
    open_channel,
    run_cli,
    start_agent,
    wait_until,
)
from controlplane.v1 import (
    membership_pb2,
    membership_pb2_grpc,
    server_pool_pb2,
    server_pool_pb2_grpc,
)

HOSTS = ("127.0.0.41", "127.0.0.42", "127.0.0.43")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: str) -> Samples:
    """Every sample of /metrics, keyed by name and label set."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples: Samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(LABEL.findall(match.group(2) or ""))
            samples[match.group(1), labels] = float(match.group(3))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metric(address: str, name: str, **labels: str) -> float:
    return value(scrape(address), name, **labels)


@pytest.fixture
def cluster(tmp_path: Path):
    port = free_port(HOSTS[0], *HOSTS[1:])
    metrics_port = free_port(HOSTS[0], *HOSTS[1:])
    agents: list[AgentProcess] = []

    def start(index: int) -> AgentProcess:
        host = HOSTS[index]
        args = ["--profile", "local", "--metrics-addr", f"{host}:{metrics_port}"]
        if index:
            args += ["--join", f"{HOSTS[0]}:{port}"]
        return start_agent(f"m{index}", host=host, port=port, args=args, log_dir=tmp_path)

    try:
        for index in range(3):
            agents.append(start(index))
        assert wait_until(lambda: len(agents[0].members()) == 3, timeout=30)
        yield agents, start, [f"{host}:{metrics_port}" for host in HOSTS]
    finally:
        for agent in agents:
            agent.kill()


def test_a_kill_moves_the_failure_counters_and_a_return_counts_as_a_flap(cluster):
    agents, start, addresses = cluster
    survivors = addresses[:2]
    assert metric(survivors[0], "serf_members", status="alive") == 3
    assert ("controlplane_loop_lag_max_seconds", frozenset()) in scrape(survivors[0])
    # Probe acks carry coordinates: every agent has applied some round trips.
    assert wait_until(
        lambda: all(metric(a, "serf_coordinate_updates_total") > 0 for a in addresses),
        timeout=10,
    )
    assert metric(survivors[0], "serf_coordinate_resets_total") == 0
    suspected_before = sum(metric(a, "memberlist_msg_suspect_total") for a in survivors)

    agents[2].kill()
    assert wait_until(
        lambda: all(metric(a, "serf_members", status="failed") == 1 for a in survivors),
        timeout=30,
    )
    after = [scrape(a) for a in survivors]
    assert sum(value(s, "memberlist_msg_suspect_total") for s in after) > suspected_before
    for samples in after:
        assert value(samples, "serf_members", status="alive") == 2
        assert value(samples, "serf_member_events_total", type="member-failed") == 1
        assert value(samples, "memberlist_udp_sent_bytes_total") > 0

    # Back within Serf's 60 s flap timeout, under the same name: a flap.
    agents[2] = start(2)
    assert wait_until(
        lambda: all(metric(a, "serf_members", status="alive") == 3 for a in survivors),
        timeout=30,
    )
    assert wait_until(lambda: metric(survivors[0], "serf_member_flap_total") == 1, timeout=10)


def test_rpcs_are_counted_by_method_and_code(cluster):
    agents, _, addresses = cluster
    list_members = {
        "grpc_service": "controlplane.v1.Membership",
        "grpc_method": "ListMembers",
        "grpc_type": "unary",
    }
    find_server = {
        "grpc_service": "controlplane.v1.ServerPool",
        "grpc_method": "FindServer",
        "grpc_type": "unary",
    }
    before = scrape(addresses[0])
    with open_channel(agents[0].target) as channel:
        members = membership_pb2_grpc.MembershipStub(channel)
        for _ in range(3):
            members.ListMembers(membership_pb2.ListMembersRequest(), timeout=5)
        pools = server_pool_pb2_grpc.ServerPoolStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            pools.FindServer(server_pool_pb2.FindServerRequest(pool="absent"), timeout=5)
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    after = scrape(addresses[0])

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("grpc_server_handled_total", **list_members, grpc_code="OK") == 3
    assert moved("grpc_server_started_total", **list_members) == 3
    assert moved("grpc_server_handling_seconds_count", **list_members) == 3
    assert moved("grpc_server_handled_total", **find_server, grpc_code="NOT_FOUND") == 1
    assert moved("grpc_server_handled_total", **find_server, grpc_code="OK") == 0


def test_the_listener_answers_only_metrics_and_bounds_what_it_reads(cluster):
    _, _, addresses = cluster
    host, port = addresses[0].rsplit(":", 1)

    def exchange(data: bytes) -> bytes:
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(data)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    assert exchange(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert exchange(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405")
    assert exchange(b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400")
    oversized = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
    assert exchange(oversized).startswith(b"HTTP/1.1 431")
    head = exchange(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert head.endswith(b"\r\n\r\n")
    # Still serving after all that.
    assert ("serf_lamport_time", frozenset()) in scrape(addresses[0])


def test_a_metrics_address_that_cannot_be_used_is_refused_with_one_line(tmp_path):
    result = run_cli("agent", "--metrics-addr", "localhost:9464", timeout=20)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--metrics-addr" in result.stderr
    assert "localhost:9464" in result.stderr
