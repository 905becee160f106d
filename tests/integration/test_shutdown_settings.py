"""leave_on_terminate and rejoin_after_leave on real agents: what a SIGTERM leaves
behind in the others' member lists and in the snapshot, and whom a restart rejoins."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until

pytestmark = [pytest.mark.integration]

HOSTS = ("127.0.0.91", "127.0.0.92")


def test_sigterm_leaves_or_not_and_a_restart_rejoins_after_a_leave_or_not(
    tmp_path: Path,
) -> None:
    port = free_port(*HOSTS)
    base = ["--profile", "local", "--drain-period", "0"]
    data = ["--data-dir", str(tmp_path / "b-data")]
    seed = start_agent("sd-a", host=HOSTS[0], port=port, args=base, log_dir=tmp_path)
    agents: list[AgentProcess] = [seed]

    def start_b(*args: str) -> AgentProcess:
        agent = start_agent(
            "sd-b", host=HOSTS[1], port=port, args=[*base, *data, *args], log_dir=tmp_path
        )
        agents.append(agent)
        return agent

    def seen_by_seed() -> str | None:
        return seed.members().get("sd-b")

    try:
        # Default: SIGTERM drains and leaves; the others see `left`.
        b = start_b("--join", seed.target)
        assert wait_until(lambda: seen_by_seed() == "ALIVE", timeout=20)
        assert b.terminate() == 0
        assert seen_by_seed() == "LEFT"

        # rejoin_after_leave = false (Serf's default): the leave in the snapshot means
        # the restarted agent starts alone.
        b = start_b("--rejoin-after-leave", "false")
        assert b.members() == {"sd-b": "ALIVE"}
        assert not wait_until(lambda: len(b.members()) > 1, timeout=2)
        assert b.terminate() == 0

        # Default rejoin_after_leave: the same snapshot, now with two leaves in it,
        # brings the agent back without --join.
        b = start_b("--leave-on-terminate", "false")
        assert wait_until(lambda: seen_by_seed() == "ALIVE", timeout=20), b.log()[-2000:]
        assert "rejoining the 1 members of its snapshot (rejoin_after_leave)" in b.log()

        # leave_on_terminate = false: the agent stops without leaving; the others
        # see a failure, and the snapshot still lists them.
        assert b.terminate() == 0
        assert "stops without leaving (leave_on_terminate = false)" in b.log()
        assert wait_until(lambda: seen_by_seed() == "FAILED", timeout=30)
        b = start_b("--rejoin-after-leave", "false")
        assert wait_until(lambda: seen_by_seed() == "ALIVE", timeout=20), b.log()[-2000:]
    finally:
        for agent in agents:
            agent.kill()
