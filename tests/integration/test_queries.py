"""Serf queries on three real agents: tag filters, agent handlers, a client handler, the CLI."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.client import Client, ClientOptions
from controlplane.errors import ControlPlaneError, InvalidArgument
from controlplane.testing.agents import (
    AgentProcess,
    free_port,
    run_cli,
    start_agent,
    wait_until,
    with_credentials,
)
from controlplane.v1 import membership_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
ROLES = {"node-1": "web", "node-2": "db", "node-3": "web"}
# The handler answers with its member's name and the payload, read from stdin.
HANDLER = shlex.join(
    [
        sys.executable,
        "-c",
        (
            "import os, sys; sys.stdout.write(os.environ['CONTROLPLANE_SELF_NAME'] + ':'"
            " + os.environ['SERF_QUERY_NAME'] + ':' + sys.stdin.read())"
        ),
    ]
)


def metric(address: str, sample: str) -> float:
    """One sample of an agent's /metrics, by its exposition name with labels."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            name, _, number = line.rpartition(" ")
            if name == sample:
                return float(number)
    return 0.0


@pytest.fixture
def metrics_address() -> str:
    return f"{HOSTS[1]}:{free_port(HOSTS[1])}"


@pytest.fixture
def agents(tmp_path: Path, metrics_address: str) -> Iterator[dict[str, AgentProcess]]:
    port = free_port(HOSTS[0], *HOSTS[1:])
    started: dict[str, AgentProcess] = {}
    try:
        for index, (name, role) in enumerate(ROLES.items()):
            args = ["--profile", "local", "--drain-period", "0", "--tag", f"role={role}"]
            args += ["--query-handler", f"who={HANDLER}"]
            if name == "node-2":
                args += ["--metrics-addr", metrics_address]
            if index:
                args += ["--join", f"{HOSTS[0]}:{port}"]
            started[name] = start_agent(
                name, host=HOSTS[index], port=port, args=args, log_dir=tmp_path
            )
        names = set(ROLES)
        assert wait_until(
            lambda: all(a.members() == dict.fromkeys(names, "ALIVE") for a in started.values()),
            timeout=30,
        )
        yield started
    finally:
        for agent in started.values():
            agent.kill()


def client_of(agent: AgentProcess) -> Client:
    return Client([agent.target], with_credentials(ClientOptions(heartbeat=False)))


def test_a_tag_filtered_query_reaches_exactly_the_matching_members(
    agents: dict[str, AgentProcess], metrics_address: str
) -> None:
    with client_of(agents["node-2"]) as client:
        messages = list(
            client.query(
                "who", b"ping", filter_tags={"role": "^web$"}, request_ack=True, timeout=3.0
            )
        )
        kinds = [m.WhichOneof("body") for m in messages]
        assert kinds[0] == "dispatched"
        assert kinds[-1] == "done"
        acks = sorted(getattr(m.ack, "from") for m in messages if m.HasField("ack"))
        responses = {
            getattr(m.response, "from"): m.response.payload
            for m in messages
            if m.HasField("response")
        }
        assert acks == ["node-1", "node-3"]
        assert responses == {"node-1": b"node-1:who:ping", "node-3": b"node-3:who:ping"}
        assert (messages[-1].done.acks, messages[-1].done.responses) == (2, 2)

        # A query without a handler for its name is only acked.
        others = list(client.query("nobody-answers", request_ack=True, timeout=2.0))
        assert sorted(getattr(m.ack, "from") for m in others if m.HasField("ack")) == sorted(ROLES)
        assert not any(m.HasField("response") for m in others)

        # Two queries asked: the query Lamport clock stamped 1 and 2 and moved on.
        assert client.info().gossip.query_time == 3
        assert metric(metrics_address, "serf_queries_asked_total") == 2
        assert metric(metrics_address, "serf_query_acks_total") == 5
        assert metric(metrics_address, "serf_query_responses_total") == 2
        assert metric(metrics_address, "serf_query_lamport_time") == 3
        # node-2 (role db) matched only the second query, which has no handler.
        assert metric(metrics_address, 'controlplane_query_handlers_total{result="started"}') == 0

        with pytest.raises(InvalidArgument, match="relay_factor"):
            list(client.query("who", relay_factor=6))
        with pytest.raises(InvalidArgument, match="RE2"):
            list(client.query("who", filter_tags={"role": "("}))


def test_every_query_starts_its_handlers(agents: dict[str, AgentProcess]) -> None:
    # Handlers are child processes of agents that run gRPC's threads (and uvloop):
    # started with a fork that runs Python in the child, about one in three crashed
    # before it ran (shell/childprocess.py). Each of a dozen queries must be answered.
    missing = []
    with client_of(agents["node-2"]) as client:
        for round_ in range(12):
            payload = f"round {round_}".encode()
            messages = list(client.query("who", payload, filter_tags={"role": "^web$"}, timeout=3))
            answered = sorted(
                getattr(m.response, "from") for m in messages if m.HasField("response")
            )
            if answered != ["node-1", "node-3"]:
                missing.append((round_, answered))
    assert missing == []


def test_a_client_handler_answers_and_the_cli_prints_like_serf(
    agents: dict[str, AgentProcess], metrics_address: str
) -> None:
    answered: list[pb.WatchQueriesResponse] = []
    errors: list[BaseException] = []
    watching = client_of(agents["node-3"])

    def answer(query: pb.WatchQueriesResponse) -> bytes:
        answered.append(query)
        return b"client says " + query.payload

    def run() -> None:
        try:
            watching.answer_queries(answer, ["hello"])
        except ControlPlaneError as error:  # the client closed under it
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        # The watch is open once node-3 counts a watcher; until then ask again.
        def asked() -> bool:
            with client_of(agents["node-1"]) as client:
                replies = list(client.query("hello", b"hi", filter_nodes=["node-3"], timeout=1.5))
            return any(m.HasField("response") for m in replies)

        assert wait_until(asked, timeout=20, interval=0.2)
        assert answered[-1].name == "hello"
        assert answered[-1].origin == "node-1"
        assert answered[-1].payload == b"hi"
    finally:
        watching.close()
        thread.join(10)

    target = agents["node-2"].target
    text = run_cli("query", "who", "x", "--tag", "role=^web$", "--addr", target, "--timeout", "3")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "Query 'who' dispatched"
    assert sorted(line for line in lines if line.startswith("Ack from")) == [
        "Ack from 'node-1'",
        "Ack from 'node-3'",
    ]
    assert "Response from 'node-1': node-1:who:x" in lines
    assert lines[-2:] == ["Total Acks: 2", "Total Responses: 2"]

    as_json = run_cli(
        "query", "who", "--node", "node-2", "--format", "json", "--addr", target, "--timeout", "2"
    )
    assert json.loads(as_json.stdout) == {
        "acks": ["node-2"],
        "responses": {"node-2": "node-2:who:"},
    }

    bad = run_cli("query", "who", "--relay-factor", "9", "--addr", target)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "relay-factor" in bad.stderr
