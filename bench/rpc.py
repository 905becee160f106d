"""Client RPC benchmark: unary calls to an agent beside an empty protobuf RPC, both
through the same client, with the CPU each side spends per call; local ring lookups.

Prints numbers and ratios; asserts nothing. Starts its own agents on 127.0.0.x
(five, so ListMembers returns five members) and a bare grpc.aio server
(bench/echo_server.py) that answers the same RPCs with empty responses. Both are
called through `AsyncClient`, so the client's own work (request building,
failover bookkeeping, decoding) is in the baseline too, and the ratio measures
what the agent adds. Both servers run in processes of their own.

Each configuration is measured in several rounds; in a round every call runs
right beside a baseline run of its own (which of the two goes first alternates
from round to round, the order of the calls rotates), so that load from elsewhere
on the machine, which drifts over seconds, falls on both sides of each ratio
alike. The figures are medians over the rounds and the ratio is the median of the
per-pair ratios. CPU per call is read from each process's own account
(`getrusage` for the harness, /proc/PID/stat for the server), user plus system
time of every thread. Takes about two and a half minutes.

A control row measures a second bare server, in a process of its own, against
the first the same way: its ratio would be 1.00x on a quiet machine, and how far
it strays is how far any ratio of the run can stray for the machine's sake.

    .venv/bin/python bench/rpc.py [--rounds 32] [--seconds 0.25]

Failover (kill, hang, black hole) is bench/failover.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from controlplane.client import AsyncClient, ClientOptions
from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until
from controlplane.v1 import server_pool_pb2

HOSTS = [f"127.0.0.{i}" for i in range(1, 6)]
CONCURRENCIES = (1, 32)
BASELINE = "empty RPC"
CONTROL = "empty RPC, 2nd"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of every thread of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces; it ends at the last ')'.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


@dataclass
class Run:
    rate: float
    client_us: float
    server_us: float


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(float(getattr(run, attribute)) for run in self.runs)


async def measure(
    call: Callable[[], Awaitable[Any]], concurrency: int, seconds: float, server_pid: int
) -> Run:
    """`concurrency` tasks calling back to back for `seconds`."""
    stop_at = time.perf_counter() + seconds
    counts = [0] * concurrency

    async def worker(index: int) -> None:
        while time.perf_counter() < stop_at:
            await call()
            counts[index] += 1

    client_before, server_before = own_cpu(), process_cpu(server_pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    client_cpu, server_cpu = own_cpu() - client_before, process_cpu(server_pid) - server_before
    calls = max(1, sum(counts))
    return Run(calls / elapsed, client_cpu / calls * 1e6, server_cpu / calls * 1e6)


def start_echo(host: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port(host)
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("echo_server.py")), str(port), host]
    )
    target = f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=20)
    return process, target


async def unary_section(agents: list[AgentProcess], rounds: int, seconds: float) -> None:
    echo_process, echo_target = start_echo(HOSTS[0])
    control_process, control_target = start_echo(HOSTS[1])
    try:
        options = ClientOptions(heartbeat=False)
        async with (
            AsyncClient([agents[0].target], options) as client,
            AsyncClient([agents[0].target], options) as heartbeats,
            AsyncClient([echo_target], options) as echo,
            AsyncClient([control_target], options) as control,
        ):
            await client.add_node("10.0.0.1", 11211, ring="bench")
            await client.refresh_server_lists(
                server_pool_pb2.RefreshServerListsRequest(
                    pool="bench",
                    servers=[server_pool_pb2.Server(name=a.name, address=a.target) for a in agents],
                    api_version=server_pool_pb2.ApiVersion(major=1),
                )
            )
            # A heartbeat replaces the client's server list with the agents it names, in
            # the client's own random order: heartbeats get a client of their own, so the
            # other calls stay on agents[0], which holds the pool and the ring.
            await heartbeats.heartbeat()
            pids = {a.target: a.process.pid for a in agents}
            agent_pid = agents[0].process.pid
            # (name, call, pid of the process that answers it)
            calls: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[], int]]] = [
                (BASELINE, lambda: echo.find_server("bench"), lambda: echo_process.pid),
                (CONTROL, lambda: control.find_server("bench"), lambda: control_process.pid),
                ("FindServer", lambda: client.find_server("bench"), lambda: agent_pid),
                ("GetNode", lambda: client.get_node("user:42", ring="bench"), lambda: agent_pid),
                ("ListMembers(5)", lambda: client.members(), lambda: agent_pid),
                (
                    "Heartbeat",
                    lambda: heartbeats.heartbeat(),
                    lambda: pids[heartbeats.current_server or ""],
                ),
            ]
            idle_before = process_cpu(agents[0].process.pid)
            await asyncio.sleep(2.0)
            idle = (process_cpu(agents[0].process.pid) - idle_before) / 2.0
            print(
                f"unary calls through AsyncClient; {rounds} interleaved rounds of {seconds:g} s "
                f"per call; medians (load average before: {os.getloadavg()[0]:.2f})"
            )
            print(f"agent's own CPU while idle (gossip, timers): {idle * 100:.1f} % of a core")
            for concurrency in CONCURRENCIES:
                for _, call, pid in calls:  # warm-up: connections, caches, code paths
                    await measure(call, concurrency, 0.3, pid())
                series = {name: Series() for name, _, _ in calls}
                baseline, measured = calls[0], calls[1:]
                for round_index in range(rounds):
                    shift = round_index % len(measured)
                    for name, call, pid in measured[shift:] + measured[:shift]:
                        # Each call right beside a baseline run of its own, the two in
                        # turn first, so that the machine's load, which drifts over
                        # seconds, falls on both sides of each ratio alike.
                        pair = [(BASELINE, baseline[1], baseline[2]), (name, call, pid)]
                        if round_index % 2:
                            pair.reverse()
                        results = {
                            n: await measure(c, concurrency, seconds, p()) for n, c, p in pair
                        }
                        series[BASELINE].runs.append(results[BASELINE])
                        series[BASELINE].ratios.append(1.0)
                        series[name].runs.append(results[name])
                        series[name].ratios.append(results[name].rate / results[BASELINE].rate)
                print(f"  concurrency {concurrency}")
                print(
                    f"    {'call':<15} {'calls/s':>8} {'ratio':>6} {'min..max ratio':>15} "
                    f"{'client us/call':>15} {'server us/call':>15}"
                )
                for name, data in series.items():
                    ratio = statistics.median(data.ratios)
                    spread = f"{min(data.ratios):.2f}..{max(data.ratios):.2f}"
                    print(
                        f"    {name:<15} {data.median('rate'):8.0f} {ratio:5.2f}x {spread:>15} "
                        f"{data.median('client_us'):15.0f} {data.median('server_us'):15.0f}"
                    )
            ring = await client.ring("bench")
            lookups, started = 0, time.perf_counter()
            while time.perf_counter() - started < 1.0:
                for _ in range(1000):
                    ring.get_node("user:42")
                lookups += 1000
            print(f"local ring lookups: {lookups / (time.perf_counter() - started):,.0f}/s")
            ring.close()
    finally:
        for process in (echo_process, control_process):
            process.kill()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=0.25, help="per call per round")
    parser.add_argument(
        "--agent-arg", action="append", default=[], help="extra agent flag (repeatable)"
    )
    options = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-rpc-"))
    port = free_port(HOSTS[0], *HOSTS[1:])
    args = ["--profile", "local", "--drain-period", "0", *options.agent_arg]
    agents = [start_agent("b0", host=HOSTS[0], port=port, args=args, log_dir=log_dir)]
    try:
        for index, host in enumerate(HOSTS[1:], start=1):
            agents.append(
                start_agent(
                    f"b{index}",
                    host=host,
                    port=port,
                    args=[*args, "--join", agents[0].target],
                    log_dir=log_dir,
                )
            )
        wait_until(lambda: len(agents[0].members()) == 5, timeout=30)
        asyncio.run(unary_section(agents, options.rounds, options.seconds))
    finally:
        for agent in agents:
            agent.kill()


if __name__ == "__main__":
    main()
