"""The election across real restarts and in quorum mode, with real agent processes:
the fencing epoch survives a restart in `<data_dir>/election.epoch` (so a restarted
agent never reuses one), a damaged epoch file stops the start, and in quorum mode
a leader needs a majority: without one, nobody leads. A deleted epoch file is
taken back from the cluster before the restarted agent claims (docs/election.md,
"election.epoch has a valid range")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.testing.agents import (
    AgentProcess,
    free_port,
    start_agent,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
# A shorter lease than the default 10 s: the rules under test do not depend on its
# length, and the quorum test waits for leases to end.
LEASE, SKEW, BEAT = 4.0, 1.0, 1.0


class Agents:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port(HOSTS[0], *HOSTS[1:])
        self.started: list[AgentProcess] = []

    def start(self, index: int, *extra: str, join: bool = False, join_to: int = 0) -> AgentProcess:
        args = ["--profile", "local", "--drain-period", "0", "--lease-time", str(LEASE), *extra]
        if join:
            args += ["--join", f"{HOSTS[join_to]}:{self.port}"]
        agent = start_agent(
            f"q-{index}", host=HOSTS[index], port=self.port, args=args, log_dir=self.tmp_path
        )
        self.started.append(agent)
        return agent


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    group = Agents(tmp_path)
    try:
        yield group
    finally:
        for agent in group.started:
            agent.kill()


def leads(agent: AgentProcess, name: str) -> bool:
    view = agent.leader()
    return view is not None and view[0] == name


def test_a_restarted_agent_never_reuses_an_epoch(agents: Agents, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    args = ("--rank", "1", "--data-dir", str(data_dir))
    first = agents.start(0, *args)
    assert wait_until(lambda: leads(first, "q-0"), timeout=20)
    view = first.leader()
    assert view is not None
    epoch_before = view[1]
    assert first.terminate() == 0
    stored = int((data_dir / "election.epoch").read_text())
    assert stored >= epoch_before
    again = agents.start(0, *args)
    assert wait_until(lambda: leads(again, "q-0"), timeout=30)
    view = again.leader()
    assert view is not None
    assert view[1] > epoch_before, (
        f"the restarted agent leads with epoch {view[1]}, not above {epoch_before} from "
        "before the restart: a fenced resource would accept both"
    )


def test_a_deleted_epoch_file_is_taken_back_from_the_cluster(
    agents: Agents, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data-0"
    args = ("--rank", "1", "--data-dir", str(data_dir))
    first = agents.start(0, *args)
    assert wait_until(lambda: leads(first, "q-0"), timeout=20)
    second = agents.start(1, "--rank", "2", "--data-dir", str(tmp_path / "data-1"), join=True)
    assert wait_until(lambda: leads(second, "q-0"), timeout=20), second.leader()
    view = first.leader()
    assert view is not None
    epoch_before = view[1]
    assert first.terminate() == 0
    (data_dir / "election.epoch").unlink()
    # Back with no epoch of its own, joining the member that saw its leadership: it
    # has the lower rank, so it leads again once the lease in force ends.
    again = agents.start(0, *args, join=True, join_to=1)
    own: set[int] = set()

    def leads_again() -> bool:
        # One answer per poll: asked twice, the leadership could begin between the two.
        view = again.leader()
        if view is None or view[0] != "q-0":
            return False
        own.add(view[1])
        return leads(second, "q-0")

    assert wait_until(leads_again, timeout=30), (again.leader(), second.leader())
    assert own, "the restarted agent never reported its own leadership"
    assert min(own) > epoch_before, (
        f"the restarted agent led with epoch {min(own)} after its file was removed, "
        f"not above {epoch_before} from before the restart: an epoch was reused"
    )
    assert int((data_dir / "election.epoch").read_text()) >= max(own)


def test_a_damaged_epoch_file_stops_the_start_with_one_line(agents: Agents, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "election.epoch").write_text("seven\n")
    with pytest.raises(RuntimeError) as failed:
        agents.start(0, "--rank", "1", "--data-dir", str(data_dir))
    assert "election.epoch must hold an epoch in 0.." in str(failed.value)


def test_quorum_mode_needs_a_majority_to_lead(agents: Agents) -> None:
    quorum = ("--election-quorum", "3")
    first = agents.start(0, *quorum, "--rank", "1")
    second = agents.start(1, *quorum, "--rank", "2", join=True)
    # Two of three are a majority: a leader is elected (the lowest rank).
    assert wait_until(lambda: leads(first, "q-0") and leads(second, "q-0"), timeout=40), (
        first.leader(),
        second.leader(),
    )
    # Alone, the leader cannot renew with a majority: its lease runs out and nobody
    # leads, however long the survivor waits.
    second.kill()
    killed_at = time.monotonic()
    assert wait_until(lambda: first.leader() is None, timeout=LEASE + SKEW + 2 * BEAT + 5), (
        first.leader()
    )
    assert time.monotonic() - killed_at > BEAT  # the lease in force was honoured
    # Several beats of claims without a majority: none of them succeeds.
    deadline = time.monotonic() + 3 * BEAT
    while time.monotonic() < deadline:
        assert first.leader() is None, "a leader without a majority in quorum mode"
        time.sleep(0.2)
    # A majority again (a third member joins): a leader again.
    third = agents.start(2, *quorum, "--rank", "3", join=True)
    assert wait_until(lambda: leads(first, "q-0") and leads(third, "q-0"), timeout=45), (
        first.leader(),
        third.leader(),
    )
