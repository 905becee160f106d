"""Leadership that stays put, and what the election costs on the wire. Prints; asserts nothing.

    .venv/bin/python bench/leadership.py churn              # 20 follower restarts, 5 joins
    .venv/bin/python bench/leadership.py churn --restarts 4 --joins 2
    .venv/bin/python bench/leadership.py idle               # N = 5, 10, 20, 30
    .venv/bin/python bench/leadership.py idle --sizes 5 10 --window 10

``churn`` runs three real agents of equal rank (0) with data directories, finds the
leader, then restarts followers one at a time (odd restarts stop the agent with
SIGTERM, which leaves gracefully; even ones SIGKILL it and start it again at once)
and joins servers of equal rank whose names sort before every other name, each
only once the cluster has settled from the previous step. A watcher thread asks
every running agent ``GetLeader`` every 0.2 s the whole time. It prints the leaderships
any agent reported (name, epoch), how many times the leader or its epoch changed,
the longest time any settled agent reported no leader, and, at the end, how long
the survivors took to agree on a new leader after the leader itself is killed,
against the documented bound (``docs/election.md``).

``idle`` starts N agents (every one a server of rank 0, the default), waits until
they agree on one leader and the membership has been quiet for a while, then
counts the UDP payload bytes each agent sends over a window. The count comes from
the agents themselves: each runs with a ``sitecustomize`` that wraps
``socket.socket.sendto`` and writes its running total to a file once a second.
Push-pull (TCP) is not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from controlplane.election import ElectionConfig, failover_bound
from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until
from controlplane.v1 import membership_pb2, membership_pb2_grpc

ALIVE = membership_pb2.MEMBER_STATUS_ALIVE

COUNTER = """
import os, socket, threading, time
_path = os.environ.get("LEADERSHIP_BENCH_UDP_COUNT")
if _path:
    _totals = [0, 0]
    _send = socket.socket.sendto

    def sendto(self, data, *args):
        sent = _send(self, data, *args)
        if self.type == socket.SOCK_DGRAM:
            _totals[0] += len(data)
            _totals[1] += 1
        return sent

    socket.socket.sendto = sendto

    def _dump():
        while True:
            time.sleep(1.0)
            tmp = _path + ".tmp"
            with open(tmp, "w") as out:
                out.write(f"{time.monotonic()} {_totals[0]} {_totals[1]}\\n")
            os.replace(tmp, _path)

    threading.Thread(target=_dump, daemon=True).start()
"""


# ---------------------------------------------------------------------------- helpers


class Unanswered(Exception):
    """GetLeader did not answer in time (a busy machine, an agent stopping)."""


def ask_leader(agent: AgentProcess, timeout: float = 1.0) -> tuple[str, int] | None:
    """The agent's answer: (name, epoch), or None for "no leader"; raises Unanswered."""
    try:
        with agent.channel() as channel:
            answer = membership_pb2_grpc.MembershipStub(channel).GetLeader(
                membership_pb2.GetLeaderRequest(), timeout=timeout
            )
    except grpc.RpcError as error:
        raise Unanswered(str(error.code())) from None
    return (answer.leader.name, answer.leader.epoch) if answer.HasField("leader") else None


def leader_of(agent: AgentProcess, timeout: float = 1.0) -> tuple[str, int] | None:
    try:
        return ask_leader(agent, timeout)
    except Unanswered:
        return None


def alive_count(agent: AgentProcess) -> int:
    try:
        with agent.channel() as channel:
            response = membership_pb2_grpc.MembershipStub(channel).ListMembers(
                membership_pb2.ListMembersRequest(statuses=[ALIVE]), timeout=2
            )
    except grpc.RpcError:
        return -1
    return len(response.members)


def agreed(agents: list[AgentProcess]) -> tuple[str, int] | None:
    views = {leader_of(agent) for agent in agents}
    if len(views) == 1:
        (view,) = views
        return view
    return None


def stop(agent: AgentProcess) -> None:
    with contextlib.suppress(Exception):
        agent.kill()


# ---------------------------------------------------------------------------- churn


@dataclass
class Watch:
    """What a watcher thread saw: every (name, epoch) reported, and no-leader stretches."""

    agents: dict[str, AgentProcess] = field(default_factory=dict)
    # Agents that reported the leader once since they (re)started: only their
    # no-leader answers count as gaps.
    settled: set[str] = field(default_factory=set)
    seen: list[tuple[float, str, tuple[str, int]]] = field(default_factory=list)
    gap_started: dict[str, float] = field(default_factory=dict)
    longest_gap: tuple[float, str] = (0.0, "")
    no_leader_answers: int = 0
    answers: int = 0
    unanswered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: bool = True

    def set_agent(self, agent: AgentProcess) -> None:
        with self.lock:
            self.agents[agent.name] = agent
            self.settled.discard(agent.name)
            self.gap_started.pop(agent.name, None)

    def drop_agent(self, name: str) -> None:
        with self.lock:
            self.agents.pop(name, None)
            self.settled.discard(name)
            self.gap_started.pop(name, None)

    def run(self) -> None:
        while self.running:
            with self.lock:
                agents = list(self.agents.values())
            for agent in agents:
                try:
                    view = ask_leader(agent, timeout=2.0)
                except Unanswered:
                    with self.lock:
                        self.unanswered += 1
                    continue
                now = time.monotonic()
                with self.lock:
                    if agent.name not in self.agents:
                        continue
                    self.answers += 1
                    if view is None:
                        if agent.name in self.settled:
                            self.no_leader_answers += 1
                            self.gap_started.setdefault(agent.name, now)
                        continue
                    self.settled.add(agent.name)
                    began = self.gap_started.pop(agent.name, None)
                    if began is not None and now - began > self.longest_gap[0]:
                        self.longest_gap = (now - began, agent.name)
                    if not self.seen or self.seen[-1][2] != view:
                        self.seen.append((now, agent.name, view))
            time.sleep(0.2)

    def leaderships(self) -> list[tuple[str, int]]:
        with self.lock:
            return list(dict.fromkeys(view for _, _, view in self.seen))


def churn(restarts: int, joins: int, work: Path) -> None:
    hosts = [f"127.0.5.{i}" for i in range(1, 4 + joins)]
    port = free_port(hosts[0], *hosts[1:])
    base = ["--drain-period", "0", "--rank", "0"]
    agents: dict[str, AgentProcess] = {}
    names = ["srv-1", "srv-2", "srv-3"]

    def launch(name: str, host: str, join: list[str]) -> AgentProcess:
        args = [*base, "--data-dir", str(work / name)]
        for target in join:
            args += ["--join", target]
        return start_agent(name, host=host, port=port, args=args, log_dir=work)

    watch = Watch()
    watcher = threading.Thread(target=watch.run, daemon=True)
    try:
        started = time.monotonic()
        for index, name in enumerate(names):
            join = [f"{hosts[0]}:{port}"] if index else []
            agents[name] = launch(name, hosts[index], join)
        first_serving = time.monotonic() - started
        wait_until(lambda: agreed(list(agents.values())) is not None, timeout=60)
        cold = time.monotonic() - started
        initial = agreed(list(agents.values()))
        print(
            f"cold start: 3 agents serving after {first_serving:.1f}s, agreed on {initial}"
            f" {cold:.1f}s after the first agent started"
        )
        if initial is None:
            return
        for agent in agents.values():
            watch.set_agent(agent)
        watcher.start()
        host_of = {name: hosts[i] for i, name in enumerate(names)}

        def settle(members: int) -> bool:
            running = list(agents.values())
            return wait_until(
                lambda: (
                    all(alive_count(a) == members for a in running) and agreed(running) is not None
                ),
                timeout=60,
            )

        timings: list[float] = []
        for number in range(1, restarts + 1):
            leader_name = (agreed(list(agents.values())) or initial)[0]
            followers = [n for n in names if n != leader_name]
            victim = followers[number % len(followers)]
            graceful = number % 2 == 1
            began = time.monotonic()
            old = agents[victim]
            watch.drop_agent(victim)
            if graceful:
                old.terminate()
            else:
                old.kill()
            others = [f"{host_of[n]}:{port}" for n in names if n != victim]
            agents[victim] = launch(victim, host_of[victim], others)
            watch.set_agent(agents[victim])
            settled = settle(len(agents))
            timings.append(time.monotonic() - began)
            print(
                f"restart {number:2d}: {victim} ({'SIGTERM' if graceful else 'SIGKILL'})"
                f" back and agreed in {timings[-1]:.1f}s"
                f"{'' if settled else ' (NOT settled within 60 s)'}"
            )
        for number in range(1, joins + 1):
            # Names that sort before every other: with equal ranks, (rank, name) prefers them.
            name = f"a-join-{number}"
            host = hosts[2 + number]
            began = time.monotonic()
            agents[name] = launch(name, host, [f"{hosts[0]}:{port}"])
            watch.set_agent(agents[name])
            settled = settle(len(agents))
            print(
                f"join {number}: {name} agreed in {time.monotonic() - began:.1f}s"
                f"{'' if settled else ' (NOT settled within 60 s)'}"
            )
        # A joiner that took over would do so when the incumbent's lease ends: wait past it.
        config = ElectionConfig()
        time.sleep(config.lease_time + config.max_clock_skew + 3 * config.beat_interval)
        watch.running = False
        watcher.join(timeout=10)
        leaderships = watch.leaderships()
        epochs = sorted({epoch for _, epoch in leaderships})
        print()
        print(
            f"{'follower restarts':28s} {restarts} ({(restarts + 1) // 2} SIGTERM,"
            f" {restarts // 2} SIGKILL)"
        )
        print(f"{'joins (rank 0, lower names)':28s} {joins}")
        print(f"{'leaderships reported':28s} {leaderships}")
        print(f"{'leader changes':28s} {len(leaderships) - 1}")
        print(f"{'epoch bumps':28s} {len(epochs) - 1}")
        print(f"{'GetLeader answers':28s} {watch.answers} ({watch.unanswered} unanswered in 2 s)")
        print(
            f"{'settled agents: no leader':28s} {watch.no_leader_answers} answers,"
            f" longest {watch.longest_gap[0]:.1f}s"
            f" {('(' + watch.longest_gap[1] + ')') if watch.longest_gap[1] else ''}"
        )
        if timings:
            print(
                f"{'restart to agreement':28s} median {statistics.median(timings):.1f}s,"
                f" max {max(timings):.1f}s"
            )

        # The leader's own death still fails over.
        leader_now = agreed(list(agents.values()))
        if leader_now is None:
            print("no agreed leader before the failover step")
            return
        agents.pop(leader_now[0]).kill()
        killed = time.monotonic()
        survivors = list(agents.values())
        ok = wait_until(
            lambda: (view := agreed(survivors)) is not None and view[0] != leader_now[0],
            timeout=90,
        )
        took = time.monotonic() - killed
        after = agreed(survivors)
        bound = failover_bound(config.lease_time, config.max_clock_skew, config.beat_interval, 0.0)
        print(
            f"{'leader killed: failover':28s} {took:.1f}s to {after}"
            f" (bound {bound:.0f}s + failure detection){'' if ok else ' NOT within 90 s'}"
        )
    finally:
        watch.running = False
        for agent in agents.values():
            stop(agent)


# ---------------------------------------------------------------------------- idle bytes


def read_count(path: Path) -> tuple[float, int, int] | None:
    try:
        stamp, sent, datagrams = path.read_text().split()
    except (OSError, ValueError):
        return None
    return float(stamp), int(sent), int(datagrams)


@contextlib.contextmanager
def cluster(size: int, work: Path, counter_dir: Path) -> Iterator[list[AgentProcess]]:
    hosts = [f"127.0.6.{i}" for i in range(1, size + 1)]
    port = free_port(hosts[0], *hosts[1:])
    started: list[AgentProcess] = []
    try:
        for index, host in enumerate(hosts):
            name = f"idle-{index + 1:02d}"
            env = {
                # The counter first; a PYTHONPATH given to the bench (another tree) after it.
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(counter_dir), os.environ.get("PYTHONPATH", "")])
                ),
                "LEADERSHIP_BENCH_UDP_COUNT": str(work / f"{name}.count"),
            }
            args = ["--drain-period", "0"]
            if index:
                args += ["--join", f"{hosts[0]}:{port}"]
            started.append(
                start_agent(name, host=host, port=port, args=args, log_dir=work, env=env)
            )
        yield started
    finally:
        for agent in started:
            stop(agent)


def idle(sizes: list[int], window: float, quiet: float, work: Path) -> None:
    counter_dir = work / "counter"
    counter_dir.mkdir(parents=True, exist_ok=True)
    (counter_dir / "sitecustomize.py").write_text(COUNTER)
    rows: list[tuple[int, float, float, float, float, str]] = []
    for size in sizes:
        run_dir = work / f"n{size}"
        run_dir.mkdir(parents=True, exist_ok=True)
        with cluster(size, run_dir, counter_dir) as agents:
            converged = wait_until(
                lambda n=size: (
                    all(alive_count(a) == n for a in agents)  # type: ignore[misc]
                    and agreed(agents) is not None
                ),
                timeout=120,
                interval=0.5,
            )
            leader = agreed(agents)
            if not converged or leader is None:
                print(f"N={size}: did not converge; skipped")
                continue
            time.sleep(quiet)
            before = {a.name: read_count(run_dir / f"{a.name}.count") for a in agents}
            time.sleep(window)
            after = {a.name: read_count(run_dir / f"{a.name}.count") for a in agents}
            rates: dict[str, float] = {}
            for agent in agents:
                first, last = before[agent.name], after[agent.name]
                if first is None or last is None or last[0] <= first[0]:
                    continue
                rates[agent.name] = (last[1] - first[1]) / (last[0] - first[0])
            if not rates:
                print(f"N={size}: no byte counts")
                continue
            values = list(rates.values())
            leader_rate = rates.get(leader[0], float("nan"))
            rows.append(
                (
                    size,
                    statistics.mean(values),
                    statistics.median(values),
                    max(values),
                    leader_rate,
                    leader[0],
                )
            )
            print(
                f"N={size:3d}: mean {rows[-1][1]:8.0f} B/s  median {rows[-1][2]:8.0f}"
                f"  max {rows[-1][3]:8.0f}  leader {leader_rate:8.0f} ({leader[0]})",
                flush=True,
            )
    print()
    print("idle UDP payload bytes sent per agent per second")
    print(f"{'N':>4} {'mean':>9} {'median':>9} {'max':>9} {'leader':>9}")
    for size, mean, median, most, leader_rate, _ in rows:
        print(f"{size:>4} {mean:>9.0f} {median:>9.0f} {most:>9.0f} {leader_rate:>9.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    churn_parser = commands.add_parser("churn", help="follower restarts and joins on 3 agents")
    churn_parser.add_argument("--restarts", type=int, default=20)
    churn_parser.add_argument("--joins", type=int, default=5)
    churn_parser.add_argument("--work-dir", type=Path, default=None)
    idle_parser = commands.add_parser("idle", help="idle UDP bytes per agent for several N")
    idle_parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 30])
    idle_parser.add_argument("--window", type=float, default=20.0)
    idle_parser.add_argument("--quiet", type=float, default=15.0)
    idle_parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        work = args.work_dir
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="leadership-")))
        work.mkdir(parents=True, exist_ok=True)
        if args.command == "churn":
            churn(args.restarts, args.joins, work)
        else:
            idle(args.sizes, args.window, args.quiet, work)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
