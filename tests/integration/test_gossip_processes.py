"""Real agent processes gossip over UDP and push-pull over gRPC on 127.0.0.x."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = [f"127.0.0.{i}" for i in range(1, 6)]
# local profile: probe every 1 s, suspicion 3 x log10(5) x 1 s scaled up to 6x
# without confirmations; 30 s covers detection plus dissemination on a loaded box.
DETECTION_BOUND = 30.0


def statuses(agent: AgentProcess) -> dict[str, str]:
    with contextlib.suppress(grpc.RpcError):
        return agent.members()
    return {}


@pytest.fixture
def five_agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    port = free_port(HOSTS[0], *HOSTS[1:])
    seed = f"{HOSTS[0]}:{port}"
    agents: list[AgentProcess] = []
    try:
        for index, host in enumerate(HOSTS, start=1):
            agents.append(
                start_agent(
                    f"node-{index}",
                    host=host,
                    port=port,
                    args=["--profile", "local", "--join", seed],
                    log_dir=tmp_path,
                )
            )
        yield agents
    finally:
        for agent in agents:
            agent.kill()


def test_five_agents_converge_and_detect_a_killed_one(five_agents: list[AgentProcess]) -> None:
    names = {agent.name for agent in five_agents}

    def converged() -> bool:
        return all(statuses(agent) == dict.fromkeys(names, "ALIVE") for agent in five_agents)

    assert wait_until(converged, timeout=30), [statuses(a) for a in five_agents]

    victim, survivors = five_agents[2], five_agents[:2] + five_agents[3:]
    victim.kill()

    def all_see_failed() -> bool:
        return all(statuses(agent).get(victim.name) == "FAILED" for agent in survivors)

    assert wait_until(all_see_failed, timeout=DETECTION_BOUND), [statuses(a) for a in survivors]
    for agent in survivors:
        seen = statuses(agent)
        assert {name for name, status in seen.items() if status == "ALIVE"} == names - {victim.name}


def test_graceful_stop_is_seen_as_left_not_failed(five_agents: list[AgentProcess]) -> None:
    names = {agent.name for agent in five_agents}
    assert wait_until(lambda: all(set(statuses(a)) == names for a in five_agents), timeout=30)
    leaver, others = five_agents[4], five_agents[:4]
    assert leaver.terminate() == 0
    assert wait_until(
        lambda: all(statuses(a).get(leaver.name) == "LEFT" for a in others), timeout=15
    ), [statuses(a) for a in others]


def test_encrypted_cluster_refuses_other_keys_and_plaintext(tmp_path: Path) -> None:

    key = base64.b64encode(os.urandom(32)).decode()
    other_key = base64.b64encode(os.urandom(16)).decode()
    hosts = HOSTS[:4]
    port = free_port(hosts[0], *hosts[1:])
    seed = f"{hosts[0]}:{port}"
    label = ["--cluster-label", "prod-eu"]
    specs = [
        ("keyed-1", hosts[0], ["--encrypt", key, *label]),
        ("keyed-2", hosts[1], ["--encrypt", key, *label, "--join", seed]),
        ("wrong-key", hosts[2], ["--encrypt", other_key, *label, "--join", seed]),
        ("plaintext", hosts[3], ["--join", seed]),
    ]
    agents: list[AgentProcess] = []
    try:
        for name, host, extra in specs:
            agents.append(
                start_agent(
                    name,
                    host=host,
                    port=port,
                    args=["--profile", "local", *extra],
                    log_dir=tmp_path,
                )
            )
        keyed = agents[:2]
        assert wait_until(
            lambda: all(statuses(a) == {"keyed-1": "ALIVE", "keyed-2": "ALIVE"} for a in keyed),
            timeout=30,
        ), [statuses(a) for a in keyed]
        # Give the outsiders several retry-join rounds; they must stay alone.
        wait_until(lambda: False, timeout=4)
        for outsider in agents[2:]:
            assert statuses(outsider) == {outsider.name: "ALIVE"}
        assert set(statuses(agents[0])) == {"keyed-1", "keyed-2"}
    finally:
        for agent in agents:
            agent.kill()
