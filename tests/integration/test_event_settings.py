"""Serf's event settings on real agents: member-event coalescing, user events that
ask to be coalesced (on by default, as in Serf's agent), and the timeouts after
which failed and departed members are reaped."""

from __future__ import annotations

import functools
import time
from pathlib import Path

from controlplane.client import Client, ClientOptions
from controlplane.testing.agents import (
    AgentProcess,
    StreamCollector,
    free_port,
    run_cli,
    start_agent,
    wait_until,
)
from controlplane.v1 import membership_pb2

HOSTS = tuple(f"127.0.0.{i}" for i in range(71, 76))
NO_HEARTBEAT = ClientOptions(heartbeat=False)


def join_events(watch: StreamCollector) -> list[list[str]]:
    """The member names of each member-join event the watch saw, in order."""
    events = []
    for message in watch.snapshot():
        assert isinstance(message, membership_pb2.WatchEventsResponse)
        if message.event.type == membership_pb2.EVENT_TYPE_MEMBER_JOIN:
            events.append(sorted(m.name for m in message.event.members))
    return events


def events_seen(watch: StreamCollector, count: int) -> bool:
    return len(join_events(watch)) == count


def start_fleet(tmp_path: Path, seed_args: list[str]) -> tuple[AgentProcess, int]:
    port = free_port(*HOSTS)
    seed = start_agent(
        "ev-0", host=HOSTS[0], port=port, args=["--profile", "local", *seed_args], log_dir=tmp_path
    )
    return seed, port


def test_joins_inside_the_coalesce_period_reach_a_watcher_as_one_event(tmp_path: Path) -> None:
    seed, port = start_fleet(tmp_path, ["--coalesce-period", "3", "--quiescent-period", "1.5"])
    others: list[AgentProcess] = []
    watch = seed.watch("WatchEvents", membership_pb2.WatchEventsRequest())
    try:
        time.sleep(0.5)  # the watch is open
        for index in range(1, 4):
            others.append(
                start_agent(
                    f"ev-{index}",
                    host=HOSTS[index],
                    port=port,
                    args=["--profile", "local", "--join", seed.target],
                    log_dir=tmp_path,
                )
            )
        assert wait_until(lambda: sum(map(len, join_events(watch))) >= 3, timeout=20)
        # Three agents joined one after another, each within a second of the last:
        # one event names them all.
        assert join_events(watch) == [["ev-1", "ev-2", "ev-3"]]
    finally:
        watch.stop()
        for agent in [*others, seed]:
            agent.kill()


def test_without_coalescing_each_join_is_its_own_event(tmp_path: Path) -> None:
    seed, port = start_fleet(tmp_path, [])
    others: list[AgentProcess] = []
    watch = seed.watch("WatchEvents", membership_pb2.WatchEventsRequest())
    try:
        time.sleep(0.5)
        for index in range(1, 3):
            others.append(
                start_agent(
                    f"ev-{index}",
                    host=HOSTS[index],
                    port=port,
                    args=["--profile", "local", "--join", seed.target],
                    log_dir=tmp_path,
                )
            )
            assert wait_until(functools.partial(events_seen, watch, index), timeout=20)
        assert join_events(watch) == [["ev-1"], ["ev-2"]]
    finally:
        watch.stop()
        for agent in [*others, seed]:
            agent.kill()


def user_events(watch: StreamCollector) -> list[bytes]:
    return [
        m.event.user.payload
        for m in watch.snapshot()
        if isinstance(m, membership_pb2.WatchEventsResponse)
        and m.event.type == membership_pb2.EVENT_TYPE_USER
    ]


def test_user_events_that_ask_for_it_are_coalesced_by_default(tmp_path: Path) -> None:
    seed, _ = start_fleet(tmp_path, [])
    watch = seed.watch("WatchEvents", membership_pb2.WatchEventsRequest())
    try:
        time.sleep(0.5)
        with Client([seed.target], NO_HEARTBEAT) as client:
            for index in range(5):
                client.fire_event("deploy", f"v{index}".encode(), coalesce=True)
            for index in range(2):
                client.fire_event("restart", f"r{index}".encode())
        # Not coalesced: both at once. Coalesced: only the newest, after the quiet second.
        assert wait_until(lambda: b"v4" in user_events(watch), timeout=10)
        assert sorted(user_events(watch)) == [b"r0", b"r1", b"v4"]
    finally:
        watch.stop()
        seed.kill()


def test_failed_and_departed_members_are_reaped_after_their_timeouts(tmp_path: Path) -> None:
    timeouts = ["--reconnect-timeout", "2", "--tombstone-timeout", "2"]
    seed, port = start_fleet(tmp_path, timeouts)
    leaver = start_agent(
        "ev-1",
        host=HOSTS[1],
        port=port,
        args=["--profile", "local", "--join", seed.target, "--drain-period", "0"],
        log_dir=tmp_path,
    )
    crasher = start_agent(
        "ev-2",
        host=HOSTS[2],
        port=port,
        args=["--profile", "local", "--join", seed.target],
        log_dir=tmp_path,
    )
    try:
        assert wait_until(lambda: len(seed.members()) == 3, timeout=20)
        assert leaver.terminate() == 0
        crasher.kill()
        # Reaped within detection, the timeouts and Serf's 15 s reap interval, not
        # after 24 h.
        assert wait_until(lambda: set(seed.members()) == {"ev-0"}, timeout=60)
        log = seed.log()
        for line in ("member-leave: ev-1", "member-failed: ev-2"):
            assert line in log
        reaped = [line for line in log.splitlines() if "member-reap: " in line]
        assert {"ev-1", "ev-2"} <= {n for line in reaped for n in line.split(": ")[-1].split(", ")}
    finally:
        for agent in (crasher, leaver, seed):
            agent.kill()


def test_an_agent_that_reaches_nobody_in_retry_max_attempts_exits_1(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run_cli(
        "agent",
        "--node",
        "lonely",
        "--bind",
        HOSTS[4],
        "--port",
        str(free_port(HOSTS[4])),
        "--profile",
        "local",
        "--join",
        nobody,
        "--retry-max",
        "3",
        "--retry-interval",
        "0.2",
        timeout=60,
    )
    # Three attempts 0.2 s then 0.4 s apart (each attempt waits for its own timeout).
    assert time.monotonic() - started < 45
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("controlplane: no member answered at " + nobody)
    assert "in 3 join attempts (retry_max)" in last
    assert "join attempt 2 reached no member; retrying in 0.4s" in result.stderr
