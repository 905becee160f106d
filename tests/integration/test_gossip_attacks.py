"""Issue 13 attacks 2, 3, 4 and 5 on real agents: each forged datagram is built with
the project's own codec, sent from a plain UDP socket to the agents' gossip port,
and must fail, the victim staying alive, listed and leading.

Without --encrypt anyone who can reach the port may send such datagrams; the bounds
checked here keep any one of them (or many) from making damage permanent."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.election.messages import LeaseMessage
from controlplane.gossip import codec
from controlplane.gossip.direct import seal_direct
from controlplane.membership import messages as membership_messages
from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2"]
TOP32 = 2**32 - 1
TOP64 = 2**64 - 1


def packet(*messages: bytes) -> bytes:
    """A plaintext, unlabelled gossip datagram, as an agent without --encrypt sends it."""
    return codec.seal(codec.frame_header("", False), codec.packet_body(list(messages)), None)


def send(agents: list[AgentProcess], datagram: bytes, times: int = 3) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.9", 0))
        for _ in range(times):
            for agent in agents:
                sock.sendto(datagram, (agent.host, agent.port))
            time.sleep(0.05)


def leader_of(agent: AgentProcess) -> tuple[str, int] | None:
    return agent.leader()


def statuses(agents: list[AgentProcess]) -> list[dict[str, str]]:
    views = []
    for agent in agents:
        try:
            views.append(agent.members())
        except grpc.RpcError:
            views.append({})
    return views


def all_alive(agents: list[AgentProcess], names: set[str]) -> bool:
    return all({n for n, s in view.items() if s == "ALIVE"} == names for view in statuses(agents))


def stays_alive(agents: list[AgentProcess], names: set[str], seconds: float) -> bool:
    """Every agent lists every one of ``names`` as ALIVE at every look for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not all_alive(agents, names):
            return False
        time.sleep(0.2)
    return True


class Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port(HOSTS[0], *HOSTS[1:])
        self.agents: list[AgentProcess] = []

    def data_dir(self, index: int) -> Path:
        return self.tmp_path / f"data-{index}"

    def start(self, index: int, *, join: bool = True, wait: bool = True) -> AgentProcess:
        args = ["--profile", "local", "--drain-period", "0", "--rank", str(index)]
        args += ["--data-dir", str(self.data_dir(index))]
        if join and index > 1:
            args += ["--join", f"{HOSTS[0]}:{self.port}"]
        agent = start_agent(
            f"a-{index}",
            host=HOSTS[index - 1],
            port=self.port,
            args=args,
            log_dir=self.tmp_path,
            wait=wait,
        )
        self.agents = [a for a in self.agents if a.name != agent.name] + [agent]
        return agent

    def stop_all(self) -> None:
        for agent in self.agents:
            agent.kill()


NAMES = {"a-1", "a-2"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start(1)
        c.start(2)
        assert wait_until(lambda: all_alive(c.agents, NAMES), timeout=30), statuses(c.agents)
        yield c
    finally:
        c.stop_all()


def test_attack_2_dead_at_the_top_incarnation_does_not_evict(cluster: Cluster) -> None:
    agents = cluster.agents
    # memberlist compares plain integers: Dead{2**32-1} won for good, since the
    # refutation was clamped at the same value. Here it is older than 1 on the circle.
    send(agents, packet(codec.encode_dead(TOP32, "a-2", "intruder")))
    # Beyond the step above the known incarnation: counted and dropped.
    send(agents, packet(codec.encode_dead(2**20, "a-2", "intruder")))
    send(agents, packet(codec.encode_suspect(TOP32 - 1, "a-1", "intruder")))
    assert stays_alive(agents, NAMES, 4.0), statuses(agents)
    # An accusation within the step is believed, and refuted: the member is back.
    send(agents, packet(codec.encode_dead(5, "a-2", "intruder")), times=1)
    assert wait_until(lambda: all_alive(agents, NAMES), timeout=15), statuses(agents)
    assert stays_alive(agents, NAMES, 2.0), statuses(agents)


def _lease(holder: str) -> bytes:
    return LeaseMessage(holder, TOP64, 1, True, False, 9.0).to_bytes()


def test_attack_3_forged_lease_is_not_believed_nor_saved(cluster: Cluster) -> None:
    agents = cluster.agents
    assert wait_until(lambda: len({leader_of(a) for a in agents}) == 1, timeout=40)
    before = leader_of(agents[0])
    assert before is not None
    # From a non-member, directly and over the gossip election channel; and in the
    # name of a real ranked member, with an epoch beyond the step.
    for holder in ("intruder", "a-1", "a-2"):
        send(agents, seal_direct("election", _lease(holder), "", None))
        channel = membership_messages.encode_channel_message("election", holder, 7, _lease(holder))
        send(agents, packet(codec.encode_user(channel)))
    time.sleep(2.0)
    views = [leader_of(a) for a in agents]
    assert all(view is not None and view[1] < 2**20 for view in views), views
    assert {view[0] for view in views if view} <= NAMES
    for index in (1, 2):
        saved = cluster.data_dir(index) / "election.epoch"
        if saved.exists():
            assert int(saved.read_text()) < 2**20


def test_attack_3_out_of_range_epoch_file_refuses_the_start(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.data_dir(1).mkdir(parents=True)
        (c.data_dir(1) / "election.epoch").write_text(f"{TOP64}\n")
        agent = c.start(1, wait=False)
        assert agent.process.wait(30) == 2
        lines = [line for line in agent.log().splitlines() if "election.epoch" in line]
        assert len(lines) == 1, agent.log()
        assert "0.." in lines[0], agent.log()
        assert "Traceback" not in agent.log()
        # In range, the agent starts and leads, above the stored epoch.
        (c.data_dir(1) / "election.epoch").write_text("41\n")
        agent = c.start(1)
        assert wait_until(lambda: (leader_of(agent) or ("", 0))[1] > 41, timeout=40)
    finally:
        c.stop_all()


def test_attack_4_far_future_leave_intent_is_dropped(cluster: Cluster) -> None:
    agents = cluster.agents
    leave = membership_messages.encode_leave_intent("a-2", TOP64, False)
    send(agents, packet(codec.encode_user(leave)))
    join = membership_messages.encode_join_intent("a-1", TOP64 - 5)
    send(agents, packet(codec.encode_user(join)))
    assert stays_alive(agents, NAMES, 4.0), statuses(agents)
    # A leave intent near the clock is still a leave intent, and the member it
    # names refutes it with a newer join: it stays.
    near = membership_messages.encode_leave_intent("a-2", 50, False)
    send(agents, packet(codec.encode_user(near)), times=1)
    assert wait_until(lambda: all_alive(agents, NAMES), timeout=15), statuses(agents)


# The name that forged a `leave` record into the snapshot: after it, a restarted
# agent forgot its members and did not rejoin.
FORGED = "x 127.0.0.9 1\nleave\nalive: y"


def test_attack_5_newline_name_is_refused_and_restart_rejoins(cluster: Cluster) -> None:
    agents = cluster.agents
    alive = codec.encode_alive(1, FORGED, ("127.0.0.9", cluster.port), b"")
    send(agents, packet(alive))
    send(agents, packet(codec.encode_suspect(1, "a-2", "evil\nname")))
    assert stays_alive(agents, NAMES, 2.0), statuses(agents)
    assert all(set(view) == NAMES for view in statuses(agents))
    snapshot = (cluster.data_dir(1) / "serf" / "local.snapshot").read_text()
    assert "leave" not in snapshot.splitlines()
    assert "y " not in snapshot
    # A crash, then a restart without --join: the snapshot brings the agent back.
    agents[0].kill()
    restarted = cluster.start(1, join=False)
    assert wait_until(lambda: all_alive(cluster.agents, NAMES), timeout=40), (
        statuses(cluster.agents),
        restarted.log()[-2000:],
    )
