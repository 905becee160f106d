"""Client RPC benchmark: throughput beside an empty grpc.aio RPC, local ring
lookups, and the time from killing the serving agent to the next success.

Prints numbers and ratios; asserts nothing. Starts its own agents on 127.0.0.x
(five, so ListMembers returns five members) and an empty echo server in a process
of its own (bench/echo_server.py), as the agent runs in one, measured by the same
harness in the same run. Takes about a minute.

    .venv/bin/python bench/rpc.py
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from controlplane.client import AsyncClient, Client, ClientOptions
from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until
from controlplane.v1 import server_pool_pb2

HOSTS = [f"127.0.0.{i}" for i in range(1, 6)]
SECONDS_PER_RUN = 3.0
KILLS = 20
ECHO_METHOD = "/bench.Echo/Empty"  # bench/echo_server.py


def _identity(data: bytes) -> bytes:
    return data


def start_echo() -> tuple[subprocess.Popen[bytes], str]:
    """The empty-RPC baseline server, in its own process like the agent."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("echo_server.py")), str(port)]
    )
    target = f"127.0.0.1:{port}"
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=20)
    return process, target


async def throughput(call: Callable[[], Awaitable[Any]], concurrency: int) -> float:
    """Calls per second with `concurrency` tasks calling back to back."""
    stop_at = time.perf_counter() + SECONDS_PER_RUN
    counts = [0] * concurrency

    async def worker(index: int) -> None:
        while time.perf_counter() < stop_at:
            await call()
            counts[index] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return sum(counts) / (time.perf_counter() - started)


async def unary_section(agents: list[AgentProcess]) -> None:
    echo_server, echo_target = start_echo()
    echo_channel = grpc.aio.insecure_channel(echo_target)
    echo = echo_channel.unary_unary(
        ECHO_METHOD, request_serializer=_identity, response_deserializer=_identity
    )
    options = ClientOptions(heartbeat=False)
    async with AsyncClient([agents[0].target], options) as client:
        await client.add_node("10.0.0.1", 11211, ring="bench")
        await client.refresh_server_lists(
            server_pool_pb2.RefreshServerListsRequest(
                pool="bench",
                servers=[server_pool_pb2.Server(name=a.name, address=a.target) for a in agents],
                api_version=server_pool_pb2.ApiVersion(major=1),
            )
        )
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "FindServer": lambda: client.find_server("bench"),
            "GetNode": lambda: client.get_node("user:42", ring="bench"),
            "ListMembers(5)": lambda: client.members(),
        }
        print(f"unary throughput, {SECONDS_PER_RUN:g} s per run (calls/s; ratio to empty RPC)")
        for concurrency in (1, 32):
            empty = await throughput(lambda: echo(b"", timeout=5), concurrency)
            print(f"  concurrency {concurrency:>2}: empty grpc.aio RPC {empty:9.0f}")
            for name, call in calls.items():
                rate = await throughput(call, concurrency)
                print(
                    f"  concurrency {concurrency:>2}: {name:<15} {rate:9.0f}  {rate / empty:5.2f}x"
                )
        ring = await client.ring("bench")
        lookups, started = 0, time.perf_counter()
        while time.perf_counter() - started < 1.0:
            for _ in range(1000):
                ring.get_node("user:42")
            lookups += 1000
        print(f"local ring lookups: {lookups / (time.perf_counter() - started):,.0f}/s")
        ring.close()
    await echo_channel.close()
    echo_server.kill()
    echo_server.wait(10)


def failover_section(agents: list[AgentProcess], port: int, log_dir: Path) -> None:
    """SIGKILL the agent that served the last call, time the next successful call."""
    by_target = {a.target: a for a in agents[:3]}
    for extra in agents[3:]:
        extra.kill()
    options = ClientOptions(heartbeat_interval_override=0.5)
    samples: list[float] = []
    generation = 0
    with Client(list(by_target), options) as client:
        wait_until(lambda: len(client.servers()) == 3, timeout=30)
        for _ in range(KILLS):
            client.members()
            victim = by_target[client.current_server or ""]
            started = time.perf_counter()
            victim.kill()
            client.members()
            samples.append(time.perf_counter() - started)
            generation += 1
            survivor = next(a for a in by_target.values() if a is not victim)
            replacement = start_agent(
                f"r{generation}",
                host=victim.host,
                port=port,
                args=["--profile", "local", "--drain-period", "0", "--join", survivor.target],
                log_dir=log_dir,
            )
            by_target[victim.target] = replacement
            wait_until(lambda: len(client.servers()) == 3, timeout=30)
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    print(
        f"kill -> next success over {len(samples)} kills: "
        f"p50 {statistics.median(samples) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {samples[-1] * 1000:.1f} ms (goal p99 < 100 ms)"
    )
    for agent in by_target.values():
        agent.kill()


def main() -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="bench-rpc-"))
    port = free_port(HOSTS[0], *HOSTS[1:])
    args = ["--profile", "local", "--drain-period", "0"]
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
        asyncio.run(unary_section(agents))
        failover_section(agents, port, log_dir)
    finally:
        for agent in agents:
            agent.kill()


if __name__ == "__main__":
    main()
