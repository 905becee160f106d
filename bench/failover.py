"""Failover benchmark: what losing the serving agent costs a client, for three ways
of losing it.

- kill: SIGKILL. The kernel refuses the next connection and resets the open one,
  so the client learns of the failure at once.
- hang: SIGSTOP. The process keeps its sockets; the kernel accepts and
  acknowledges the client's bytes and nothing answers them, as with an agent
  whose loop is stuck or whose machine is swapping.
- black hole: the client reaches the agents through a TCP proxy (a process of
  this benchmark) that stops forwarding without closing anything, as a network
  that drops packets does. Nothing answers, nothing is refused.

Each trial: a `Client` (no background heartbeat, the three agents or their proxies
as seeds, its default deadlines) makes a successful call, the agent that answered
is lost, and the client calls `members()` until one succeeds. Printed per way:
the calls that raised before that success, and the time from the loss to the
success (p50, p99, max). The agent is then restored (restarted, SIGCONT,
forwarding again) for the next trial. With `--compare N`, N more hang trials run
with the attempt deadline off (`attempt_timeout=None`), as the client behaved
before it had one.

Prints numbers; asserts nothing. Runs its agents on 127.0.0.1-3 and the proxy on
127.0.0.1, all loopback. Takes about three minutes with 50 trials.

    .venv/bin/python bench/failover.py [--trials 50] [--compare 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.client import Client, ClientOptions
from controlplane.errors import ControlPlaneError
from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
AGENT_ARGS = ["--profile", "local", "--drain-period", "0"]
# A trial gives up after this many failed calls (each bounded by the call deadline).
MAX_FAILED_CALLS = 20


# --------------------------------------------------------------------- the proxy


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's side and the agent's (None while holed)."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    holed: bool = False


@dataclass
class _Listener:
    upstream: tuple[str, int]
    holed: bool = False
    links: set[_Link] = field(default_factory=set)


async def _pump(reader: asyncio.StreamReader, link: _Link, to_upstream: bool) -> None:
    """Copies one direction; a holed link reads and drops, and never closes."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            if link.holed:
                continue
            writer = link.upstream if to_upstream else link.client
            if writer is None:
                continue
            writer.write(data)
            await writer.drain()
    if not link.holed:
        for writer in (link.client, link.upstream):
            if writer is not None:
                writer.close()


async def _proxy(upstreams: list[tuple[str, int]]) -> None:
    listeners = [_Listener(upstream) for upstream in upstreams]
    servers = []
    ports = []
    for listener in listeners:

        async def accept(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            listener: _Listener = listener,
        ) -> None:
            link = _Link(writer, holed=listener.holed)
            listener.links.add(link)
            try:
                if not link.holed:
                    up_reader, link.upstream = await asyncio.open_connection(*listener.upstream)
                    await asyncio.gather(_pump(reader, link, True), _pump(up_reader, link, False))
                else:
                    await _pump(reader, link, True)
            except OSError:
                writer.close()
            finally:
                listener.links.discard(link)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        servers.append(server)
        ports.append(server.sockets[0].getsockname()[1])
    print(" ".join(str(p) for p in ports), flush=True)

    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def command(line: str) -> None:
        verb, _, index = line.partition(" ")
        if verb == "quit":
            done.set()
            return
        listener = listeners[int(index)]
        if verb == "hole":
            listener.holed = True
            for link in listener.links:
                link.holed = True
        elif verb == "open":
            listener.holed = False
            for link in list(listener.links):
                if link.holed:  # what the hole swallowed is lost: close, as a reset would
                    for writer in (link.client, link.upstream):
                        if writer is not None:
                            writer.close()
        print("ok", flush=True)

    def read_commands() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(command, line.strip())
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=read_commands, daemon=True).start()
    await done.wait()
    for server in servers:
        server.close()


class Proxy:
    """The proxy process: one listener on 127.0.0.1 per agent, in agent order."""

    def __init__(self, agents: list[AgentProcess]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--proxy", *(a.target for a in agents)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        ports = self._process.stdout.readline().split()
        self.targets = [f"127.0.0.1:{port}" for port in ports]

    def _command(self, line: str) -> None:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()
        self._process.stdout.readline()

    def hole(self, index: int) -> None:
        self._command(f"hole {index}")

    def open(self, index: int) -> None:
        self._command(f"open {index}")

    def close(self) -> None:
        self._process.kill()
        self._process.wait(10)


# --------------------------------------------------------------------- the trials


@dataclass
class Outcome:
    failed_calls: int
    seconds: float


def trial(client: Client, lose: Callable[[str], None]) -> Outcome:
    """Loses the agent that answered the last call; calls until one succeeds."""
    client.members()
    victim = client.current_server or ""
    started = time.perf_counter()
    lose(victim)
    failed = 0
    while failed < MAX_FAILED_CALLS:
        try:
            client.members()
            break
        except ControlPlaneError:
            failed += 1
    return Outcome(failed, time.perf_counter() - started)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(label: str, outcomes: list[Outcome]) -> None:
    seconds = [o.seconds * 1000 for o in outcomes]
    failed = [o.failed_calls for o in outcomes]
    print(
        f"  {label:<30} {len(outcomes):>6} {sum(failed):>7} {max(failed):>5}"
        f" {statistics.median(seconds):9.1f} {percentile(seconds, 0.99):9.1f}"
        f" {max(seconds):9.1f}"
    )


class Cluster:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = free_port(*HOSTS)
        self.agents: list[AgentProcess] = []
        self.generation = 0

    def start(self) -> None:
        for index, host in enumerate(HOSTS):
            join = ["--join", self.agents[0].target] if self.agents else []
            self.agents.append(
                start_agent(
                    f"f{index}",
                    host=host,
                    port=self.port,
                    args=[*AGENT_ARGS, *join],
                    log_dir=self.log_dir,
                )
            )
        wait_until(lambda: len(self.agents[0].members()) == len(HOSTS), timeout=30)

    def by_target(self, target: str) -> int:
        return next(i for i, a in enumerate(self.agents) if a.target == target)

    def restart(self, index: int) -> None:
        self.generation += 1
        survivor = next(a for i, a in enumerate(self.agents) if i != index)
        self.agents[index] = start_agent(
            f"r{self.generation}",
            host=HOSTS[index],
            port=self.port,
            args=[*AGENT_ARGS, "--join", survivor.target],
            log_dir=self.log_dir,
        )

    def stop(self) -> None:
        for agent in self.agents:
            with contextlib.suppress(ProcessLookupError):
                agent.process.send_signal(signal.SIGCONT)
            agent.kill()


def run_kills(cluster: Cluster, trials: int, options: ClientOptions) -> list[Outcome]:
    killed: list[int] = []

    def lose(target: str) -> None:
        killed.append(cluster.by_target(target))
        cluster.agents[killed[-1]].kill()

    outcomes = []
    with Client([a.target for a in cluster.agents], options) as client:
        for _ in range(trials):
            outcomes.append(trial(client, lose))
            cluster.restart(killed[-1])
    return outcomes


def run_hangs(cluster: Cluster, trials: int, options: ClientOptions) -> list[Outcome]:
    stopped: list[AgentProcess] = []

    def lose(target: str) -> None:
        stopped.append(cluster.agents[cluster.by_target(target)])
        stopped[-1].process.send_signal(signal.SIGSTOP)

    outcomes = []
    with Client([a.target for a in cluster.agents], options) as client:
        for _ in range(trials):
            try:
                outcomes.append(trial(client, lose))
            finally:
                while stopped:
                    stopped.pop().process.send_signal(signal.SIGCONT)
    return outcomes


def run_black_holes(cluster: Cluster, trials: int, options: ClientOptions) -> list[Outcome]:
    proxy = Proxy(cluster.agents)
    holed: list[int] = []

    def lose(target: str) -> None:
        holed.append(proxy.targets.index(target))
        proxy.hole(holed[-1])

    outcomes = []
    try:
        with Client(proxy.targets, options) as client:
            for _ in range(trials):
                try:
                    outcomes.append(trial(client, lose))
                finally:
                    while holed:
                        proxy.open(holed.pop())
    finally:
        proxy.close()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument(
        "--compare", type=int, default=5, help="hang trials without an attempt deadline"
    )
    parser.add_argument("--proxy", nargs="+", metavar="UPSTREAM", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.proxy:
        upstreams = []
        for target in arguments.proxy:
            host, _, port = target.rpartition(":")
            upstreams.append((host, int(port)))
        asyncio.run(_proxy(upstreams))
        return

    options = ClientOptions(heartbeat=False)
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="bench-failover-")))
    try:
        cluster.start()
        print(
            f"losing the serving agent of 3; client deadlines: call {options.timeout:g} s, "
            f"attempt {options.attempt_timeout:g} s"
        )
        print(
            f"  {'way':<30} {'trials':>6} {'failed':>7} {'max':>5}"
            f" {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
        )
        report("kill (SIGKILL)", run_kills(cluster, arguments.trials, options))
        report("hang (SIGSTOP)", run_hangs(cluster, arguments.trials, options))
        report("black hole (proxy)", run_black_holes(cluster, arguments.trials, options))
        if arguments.compare:
            without = ClientOptions(heartbeat=False, attempt_timeout=None)
            report("hang, no attempt deadline", run_hangs(cluster, arguments.compare, without))
        print("  failed: calls that raised before the next success, over all trials; max: in one")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
