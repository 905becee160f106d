"""Agents attend the next members in name order (shell/attend.py): a killed agent's
connections close at once, and its attendants probe it out of turn."""

from __future__ import annotations

import time
from pathlib import Path

from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
HINT = "connection to node-3 closed; probing it now"


def test_a_killed_agent_is_probed_at_once_by_its_attendants(tmp_path: Path) -> None:
    port = free_port(*HOSTS)
    agents: list[AgentProcess] = []
    try:
        for index, host in enumerate(HOSTS, start=1):
            # Default (lan) timing: without the hint, a first probe comes at a member's
            # turn, about once a second.
            args = ["--log-level", "debug", "--drain-period", "0"]
            if index > 1:
                args += ["--join", f"{HOSTS[0]}:{port}"]
            agents.append(
                start_agent(f"node-{index}", host=host, port=port, args=args, log_dir=tmp_path)
            )
        names = {"node-1", "node-2", "node-3"}

        def converged() -> bool:
            return all(agent.members() == dict.fromkeys(names, "ALIVE") for agent in agents)

        assert wait_until(converged, timeout=30)
        survivors = agents[:2]
        time.sleep(1.0)  # three members: each attends both others once its streams open
        agents[2].kill()
        killed_at = time.monotonic()
        assert wait_until(lambda: all(HINT in a.log() for a in survivors), timeout=10), [
            a.log()[-2000:] for a in survivors
        ]
        hinted_after = time.monotonic() - killed_at
        assert hinted_after < 5.0
        assert wait_until(
            lambda: all(a.members().get("node-3") == "FAILED" for a in survivors), timeout=30
        )
    finally:
        for agent in agents:
            agent.kill()
