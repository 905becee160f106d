"""Mistakes a new user makes in the first hour, each answered with one clear line.

A taken node name, another gossip key or label, a slow stop, and a reflection
service that could not describe a method: each against real agents on loopback.
"""

from __future__ import annotations

import base64
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from controlplane.gossip import Keyring, codec
from controlplane.testing.agents import (
    AgentProcess,
    clean_environment,
    free_port,
    start_agent,
    wait_until,
)

pytestmark = [pytest.mark.integration]

FAST = ["--profile", "local", "--drain-period", "0"]
KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.kill()


# ------------------------------------------------------------------ a taken node name


def test_a_taken_node_name_stops_the_newcomer(agents: list[AgentProcess], tmp_path: Path) -> None:
    port = free_port("127.0.0.1", "127.0.0.2", "127.0.0.3")
    incumbent = start_agent("web-1", host="127.0.0.1", port=port, args=FAST, log_dir=tmp_path)
    agents.append(incumbent)
    other = start_agent(
        "web-2",
        host="127.0.0.2",
        port=port,
        args=[*FAST, "--join", incumbent.target],
        log_dir=tmp_path,
    )
    agents.append(other)
    assert wait_until(lambda: len(other.members()) == 2, timeout=20)

    # The newcomer joins through the other member, not the one that has the name.
    newcomer = subprocess.run(
        [
            *(sys.executable, "-m", "controlplane.cli", "agent"),
            *("--node", "web-1", "--bind", "127.0.0.3", "--port", str(port)),
            *(*FAST, "--join", other.target),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(),
        check=False,
    )
    assert newcomer.returncode == 2, newcomer.stderr
    errors = [line for line in newcomer.stderr.splitlines() if line.startswith("controlplane: ")]
    assert errors == [
        (
            f"controlplane: node name 'web-1' is already taken by the member at"
            f" {incumbent.target}; start this agent with another --node"
        )
    ]
    # It stopped without a leave (that would have been about the incumbent's name).
    assert "left the cluster" not in newcomer.stderr

    # The incumbent stays, at its own address, alive for everyone.
    time.sleep(1.0)
    for agent in (incumbent, other):
        assert agent.members() == {"web-1": "ALIVE", "web-2": "ALIVE"}
    assert incumbent.process.poll() is None
    assert incumbent.health().name == "SERVING"


def test_the_incumbent_warns_about_a_claimant(agents: list[AgentProcess], tmp_path: Path) -> None:
    port = free_port("127.0.0.1", "127.0.0.2")
    incumbent = start_agent("db-1", host="127.0.0.1", port=port, args=FAST, log_dir=tmp_path)
    agents.append(incumbent)
    (tmp_path / "newcomer").mkdir()
    newcomer = start_agent(
        "db-1",
        host="127.0.0.2",
        port=port,
        args=[*FAST, "--join", incumbent.target],
        log_dir=tmp_path / "newcomer",
        wait=False,
    )
    agents.append(newcomer)
    assert newcomer.process.wait(timeout=60) == 2
    assert wait_until(lambda: "claims this agent's node name 'db-1'" in incumbent.log(), 10)
    warning = next(line for line in incumbent.log().splitlines() if "claims" in line)
    assert f"the member at 127.0.0.2:{port} claims" in warning
    assert incumbent.members() == {"db-1": "ALIVE"}


# ------------------------------------------------------------------ another key or label


def send_datagram(target: tuple[str, int], data: bytes) -> tuple[str, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(data, target)
        address = sock.getsockname()
    return str(address[0]), int(address[1])


def test_a_member_without_the_key_is_named_in_both_logs(
    agents: list[AgentProcess], tmp_path: Path
) -> None:
    port = free_port("127.0.0.1", "127.0.0.2")
    keyed = start_agent(
        "keyed", host="127.0.0.1", port=port, args=[*FAST, "--encrypt", KEY], log_dir=tmp_path
    )
    agents.append(keyed)
    plain = start_agent(
        "plain",
        host="127.0.0.2",
        port=port,
        args=[*FAST, "--join", keyed.target],
        log_dir=tmp_path,
        wait=False,
    )
    agents.append(plain)
    # The exchange comes from the TCP peer's address (the client socket is not bound).
    refused = "1 state exchange (push-pull) from 127.0.0.1 was not encrypted: this agent has"
    assert wait_until(lambda: refused in keyed.log(), timeout=30), keyed.log()
    told = (
        f"{keyed.target} refused 1 state exchange (push-pull) of this agent: it requires"
        " encrypted gossip: give this agent the cluster's --encrypt key"
    )
    assert wait_until(lambda: told in plain.log(), timeout=30), plain.log()
    # Rate limited: the retries of the join do not add a line each.
    assert keyed.log().count(refused) == 1


def test_datagrams_with_another_key_or_label_are_named(
    agents: list[AgentProcess], tmp_path: Path
) -> None:
    agent = start_agent("keyed", args=[*FAST, "--encrypt", KEY], log_dir=tmp_path)
    agents.append(agent)
    target = (agent.host, agent.port)
    body = codec.packet_body([codec.encode_ping(1, "keyed", "stranger")])
    other_key = Keyring([bytes(32)])
    source = send_datagram(target, codec.seal(codec.frame_header("", True), body, other_key))
    decrypt = (
        f"1 gossip packet from {source[0]}:{source[1]} failed to decrypt:"
        " is --encrypt the same key on every member?"
    )
    assert wait_until(lambda: decrypt in agent.log(), timeout=10), agent.log()
    source = send_datagram(target, codec.seal(codec.frame_header("prod", True), body, other_key))
    label = f"1 gossip packet from {source[0]}:{source[1]} had another cluster label"
    assert wait_until(lambda: label in agent.log(), timeout=10), agent.log()


# ------------------------------------------------------------------ a prompt stop


def test_stop_is_prompt_after_stopped(tmp_path: Path) -> None:
    agent = start_agent("quick", args=["--drain-period", "0"], log_dir=tmp_path)
    try:
        started = time.monotonic()
        agent.process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: "agent quick stopped" in agent.log(), timeout=10, interval=0.01)
        stopped = time.monotonic()
        assert agent.process.wait(timeout=10) == 0
        exited = time.monotonic()
    finally:
        agent.kill()
    # A lone agent waits only Serf's LeavePropagateDelay (1 s) before it stops...
    assert stopped - started < 3.0, agent.log()
    # ...and once it says "stopped", the process is gone.
    assert exited - stopped < 0.8, f"exited {exited - stopped:.2f}s after 'stopped'"


# ------------------------------------------------------------------ reflection


def files_containing(target: str, symbol: str) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """The reflection service's answer to file_containing_symbol, by file name."""
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    assert not response.HasField("error_response"), response.error_response
    files = (
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    )
    return {file.name: file for file in files}


def test_reflection_resolves_a_method_with_its_comment(agent: AgentProcess) -> None:
    files = files_containing(agent.target, "controlplane.v1.Ring.GetNode")
    ring = files["controlplane/v1/ring.proto"]
    assert ring.HasField("source_code_info")
    (service,) = ring.service
    method = [m.name for m in service.method].index("GetNode")
    comments = {
        tuple(location.path): location.leading_comments
        for location in ring.source_code_info.location
    }
    # FileDescriptorProto.service is field 6, ServiceDescriptorProto.method field 2.
    assert "GetNode returns the node that owns a key" in comments[(6, 0, 2, method)]
    # The imports come along, with their own comments.
    membership = files_containing(agent.target, "controlplane.v1.Membership.GetLeader")
    assert set(membership) == {
        "controlplane/v1/membership.proto",
        "google/protobuf/duration.proto",
        "google/protobuf/timestamp.proto",
    }
    assert membership["google/protobuf/duration.proto"].HasField("source_code_info")
    assert membership["google/protobuf/timestamp.proto"].HasField("source_code_info")
