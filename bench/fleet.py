"""One real agent inside a fleet of N gossip members (a crowd). Prints; asserts nothing.

    .venv/bin/python bench/fleet.py                   # N = 100, 1000, 5000 (3 to 9 min per N)
    .venv/bin/python bench/fleet.py --quick           # N = 100 and 500, short phases
    .venv/bin/python bench/fleet.py --sizes 1000 --encrypt --tag ring=fleet --tag service_port=80
    .venv/bin/python bench/fleet.py --quick --work-dir /tmp/fleet   # keep the agent's log

For each N a crowd (``controlplane.testing.crowd``, in a process of its own) plays
N members on 127.1.x.y over the real wire protocol, and a real agent (the
``controlplane agent`` command, on 127.2.0.1, ``--join`` one crowd member, with a
data directory so its snapshot is written as in production) joins it. This
process only measures:

* join: seconds from starting the agent process (and from its first SERVING
  health answer) until ``ListMembers(statuses=[ALIVE])`` lists N + 1 members;
* ``grpc.health.v1.Health/Check`` latency, one probe every ~20 ms from a process
  of its own (so this process's work cannot delay it), per phase: ``join``
  (until the join gossip drained, see below), ``failure`` (10 % of the crowd stops
  answering; until the agent lists every one of them FAILED), ``mass-join``
  (10 % new members; until the agent lists them ALIVE) and ``flap`` (1 % of the
  members per second fail and come back with a higher incarnation, 60 s, then
  until the agent agrees with the crowd); p50/p99/max and failures;
* idle (no API calls at all, health probes paused, once the join gossip drained): the
  agent's CPU % of one core and RSS from /proc/PID/stat and /proc/PID/status over
  a 20 s window, and the bytes per second the agent sends to the crowd (UDP plus
  push-pull, both directions of push-pull counted where the agent is the sender:
  its requests as TCP bytes through the crowd's listeners, its replies to the
  crowd's push-pulls as frame bytes); the crowd's own CPU over the same window;
* ``ListMembers`` of all members: median and max of 10 calls;
* ``WatchMembers`` during the mass join: after the SNAPSHOT, each new member should
  appear in exactly one UPSERT; counts of once / missing / more than once;
* the agent's loop lag: the ``loop lag: max X ms, p99 Y ms over N samples`` line the
  agent logs at shutdown, and its ``loop lag X ms exceeds 20 ms`` warnings
  (count and worst); "n/a" when the agent does not log them;
* what the crowd saw: probes of the agent answered/late/missed, accusations of
  live members the agent made (refutations), whether the crowd ever suspected
  the agent, push-pulls, and the crowd's own loop lag. The crowd is the control:
  its loop does little, so when its lag is as high as the agent's, the machine
  was busy (the load average before and after each N is recorded too) and the
  agent's stalls are not its own.

The join phase lasts until the agent has finished re-gossiping the members it
learned from its join push-pull (every alive and join intent, a few times each,
as memberlist does); that time is reported as ``join_gossip_drain_seconds``.

Results go to ``docs/scale/crowd.json`` (``--quick``: ``docs/scale/crowd-quick.json``)
and, when matplotlib is installed (``pip install -r requirements-bench.txt``), to
PNG plots beside it: health latency per phase, idle CPU, RSS and bytes/s vs N.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import json
import multiprocessing
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.testing.agents import AgentProcess, free_port, start_agent
from controlplane.testing.crowd import CrowdProcess
from controlplane.v1 import membership_pb2, membership_pb2_grpc

AGENT_HOST = "127.2.0.1"
ROOT = Path(__file__).resolve().parent.parent
PHASES = ("join", "failure", "mass-join", "flap")
PROBE_INTERVAL = 0.02
PROBE_TIMEOUT = 5.0
STOP = "stop"
LAG_SUMMARY = re.compile(r"loop lag: max ([\d.]+) ms, p99 ([\d.]+) ms over (\d+) samples")
LAG_WARNING = re.compile(r"loop lag ([\d.]+) ms exceeds ([\d.]+) ms")
ALIVE = membership_pb2.MEMBER_STATUS_ALIVE
FAILED = membership_pb2.MEMBER_STATUS_FAILED


@dataclass(frozen=True)
class Plan:
    """Durations of one run; --quick shortens them."""

    settle: float = 2.0
    idle: float = 20.0
    # The agent's post-join gossip counts as drained after this long without any.
    quiet: float = 3.0
    drain_bound: float = 300.0
    flap_seconds: float = 60.0
    flap_rate: float = 0.01
    flap_down: tuple[float, float] = (1.0, 15.0)
    fraction: float = 0.1

    @classmethod
    def quick(cls) -> Plan:
        return cls(idle=5.0, drain_bound=60.0, flap_seconds=10.0, flap_down=(1.0, 6.0))


# ---------------------------------------------------------------------------- measuring


def _probe_health(target: str, control: Connection) -> None:
    """The health prober's process: Check every PROBE_INTERVAL while a phase is set.

    It runs apart from the bench's main process so that the bench's own work
    (parsing member lists of thousands) never delays a probe and shows up as the
    agent's latency. Phase names arrive on ``control``; None pauses, STOP ends
    the process after sending back (samples, failures)."""
    channel = grpc.insecure_channel(target)
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service="")
    phase: str | None = None
    samples: dict[str, list[float]] = {}
    failures: dict[str, int] = {}
    answered = False
    next_at = time.perf_counter()
    while True:
        # Waiting on the pipe is the pause between probes, so a new phase applies at once.
        while control.poll(max(0.0, next_at - time.perf_counter())):
            message = control.recv()
            if message == STOP:
                control.send((samples, failures))
                channel.close()
                return
            phase = message
        next_at = max(next_at + PROBE_INTERVAL, time.perf_counter())
        if phase is None:
            continue
        started = time.perf_counter()
        try:
            stub.Check(request, timeout=PROBE_TIMEOUT)
        except grpc.RpcError:
            # Until the first answer the agent is still starting, not failing.
            if answered:
                failures[phase] = failures.get(phase, 0) + 1
        else:
            answered = True
            samples.setdefault(phase, []).append(time.perf_counter() - started)


class HealthProbe:
    """Health/Check every PROBE_INTERVAL from a process of its own, tagged with the phase."""

    def __init__(self, target: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._control, child = context.Pipe()
        self._process = context.Process(
            target=_probe_health, args=(target, child), name="health-probe", daemon=True
        )
        self._process.start()
        self._phase: str | None = None
        self.samples: dict[str, list[float]] = {}
        self.failures: dict[str, int] = {}

    @property
    def phase(self) -> str | None:
        return self._phase

    @phase.setter
    def phase(self, phase: str | None) -> None:
        self._phase = phase
        self._control.send(phase)

    def summary(self) -> dict[str, dict[str, float | int]]:
        out: dict[str, dict[str, float | int]] = {}
        for phase in PHASES:
            samples = sorted(self.samples.get(phase, []))
            failures = self.failures.get(phase, 0)
            if not samples and not failures:
                continue
            out[phase] = {"probes": len(samples) + failures, "failures": failures}
            if samples:
                out[phase].update(
                    p50_ms=round(percentile(samples, 0.5) * 1000, 2),
                    p99_ms=round(percentile(samples, 0.99) * 1000, 2),
                    max_ms=round(samples[-1] * 1000, 2),
                )
        return out

    def stop(self) -> None:
        """Collect the samples and end the prober (bounded; once)."""
        if not self._process.is_alive():
            return
        with contextlib.suppress(OSError, EOFError):
            self._control.send(STOP)
            if self._control.poll(PROBE_TIMEOUT + 5):
                self.samples, self.failures = self._control.recv()
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; the fields after it are space-separated.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, from /proc/PID/status."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


class Members:
    """The agent's Membership API through the generated stubs."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(
            target, options=(("grpc.max_receive_message_length", 64 * 1024 * 1024),)
        )
        self._stub = membership_pb2_grpc.MembershipStub(self._channel)

    def names(self, *statuses: int, timeout: float = 15.0) -> set[str] | None:
        """Member names in these statuses, or None when a call failed. One call lists
        everything; when the agent pages (a token back, or a list too large for one
        response) the pages are followed."""
        names: set[str] = set()
        paging: dict[str, Any] = {}
        for _page in range(1000):
            request = membership_pb2.ListMembersRequest(statuses=list(statuses), **paging)  # type: ignore[arg-type]
            try:
                response = self._stub.ListMembers(request, timeout=timeout)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not paging:
                    paging = {"page_size": 1000}
                    continue
                return None
            names.update(member.name for member in response.members)
            token = getattr(response, "next_page_token", "")
            if not token:
                return names
            paging = {"page_size": 1000, "page_token": token}
        return None

    def list_latency(self, calls: int) -> list[float]:
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            with contextlib.suppress(grpc.RpcError):
                self._stub.ListMembers(membership_pb2.ListMembersRequest(), timeout=30)
                latencies.append(time.perf_counter() - started)
        return latencies

    def close(self) -> None:
        self._channel.close()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> float | None:
    """Seconds until ``predicate`` held, or None after ``timeout``."""
    started = time.monotonic()
    while True:
        if predicate():
            return round(time.monotonic() - started, 2)
        if time.monotonic() - started > timeout:
            return None
        time.sleep(interval)


# What the agent re-gossips after a join: every member it learned, and join intents.
# (Its election and ring channels keep gossiping for as long as it runs.)
JOIN_GOSSIP = ("alive", "user:join_intent")


def gossip_packets(stats: dict[str, Any]) -> int:
    """Membership messages the crowd received from the agent so far."""
    return sum(stats["messages_by_kind"].get(kind, 0) for kind in JOIN_GOSSIP)


def wait_quiet(crowd: CrowdProcess, quiet: float, bound: float) -> float | None:
    """Seconds until the agent has sent no alive or join intent for ``quiet`` seconds
    (minus those), or None when it still sends them after ``bound``."""
    started = time.monotonic()
    last_count = gossip_packets(crowd.stats())
    last_change = started
    while time.monotonic() - started < bound:
        time.sleep(0.5)
        count = gossip_packets(crowd.stats())
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change >= quiet:
            return round(last_change - started, 2)
    return None


def sent_by_agent(stats: dict[str, Any]) -> int:
    """Bytes the crowd received from the agent: UDP, push-pull requests (TCP bytes through
    the crowd's listeners) and the agent's replies to the crowd's push-pulls."""
    return int(
        stats["udp_bytes_from_agents"]
        + stats["tcp_bytes_from_agents"]
        + stats["push_pull_response_bytes"]
    )


def loop_lag(log: str) -> dict[str, Any]:
    summary = LAG_SUMMARY.findall(log)
    warnings = [float(value) for value, _threshold in LAG_WARNING.findall(log)]
    out: dict[str, Any] = {
        "warnings": len(warnings),
        "worst_warning_ms": max(warnings) if warnings else None,
    }
    if summary:
        max_ms, p99_ms, samples = summary[-1]
        out.update(max_ms=float(max_ms), p99_ms=float(p99_ms), samples=int(samples))
    else:
        out.update(max_ms=None, p99_ms=None, samples=None)
    return out


def watch_counts(messages: Sequence[Any], new: set[str]) -> dict[str, int]:
    """How often each new member appeared in an UPSERT after the first SNAPSHOT."""
    seen: dict[str, int] = dict.fromkeys(new, 0)
    snapshot_seen = False
    in_snapshot = 0
    for message in messages:
        if message.change == membership_pb2.MEMBER_CHANGE_SNAPSHOT:
            snapshot_seen = True
            in_snapshot += sum(1 for m in message.members if m.name in new)
            continue
        if snapshot_seen and message.change == membership_pb2.MEMBER_CHANGE_UPSERT:
            for member in message.members:
                if member.name in seen:
                    seen[member.name] += 1
    return {
        "new_members": len(new),
        "once": sum(1 for count in seen.values() if count == 1),
        "missing": sum(1 for count in seen.values() if count == 0),
        "more_than_once": sum(1 for count in seen.values() if count > 1),
        "in_snapshot": in_snapshot,
        "messages": len(messages),
    }


# ---------------------------------------------------------------------------- one run


@dataclass
class Run:
    size: int
    plan: Plan
    work: Path
    agent_args: list[str]
    crowd_args: list[str]
    data_dir: bool = True
    result: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        print(f"  [N={self.size}] {text}", flush=True)


def run_size(run: Run) -> dict[str, Any]:
    size, plan, result = run.size, run.plan, run.result
    result["size"] = size
    result["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
    # Every wait is bounded; the bounds grow with N for an agent that is slow at scale.
    bound = 60.0 + size * 0.06
    crowd = CrowdProcess.start(
        size,
        log_dir=run.work,
        args=[*run.crowd_args, "--max-seconds", str(int(bound * 6 + plan.flap_seconds + 600))],
    )
    result["crowd_bind_seconds"] = crowd.ready["bind_seconds"]
    result["crowd_random_seed"] = crowd.ready.get("random_seed")
    agent: AgentProcess | None = None
    probe: HealthProbe | None = None
    members: Members | None = None
    try:
        port = free_port(AGENT_HOST)
        data_dir = ["--data-dir", str(run.work / f"agent-{size}")] if run.data_dir else []
        started = time.monotonic()
        agent = start_agent(
            f"agent-{size}",
            host=AGENT_HOST,
            port=port,
            args=["--join", crowd.seed, *data_dir, *run.agent_args],
            log_dir=run.work,
            wait=False,
        )
        probe = HealthProbe(agent.target)
        probe.phase = "join"
        agent.wait_serving(timeout=60)
        serving = time.monotonic()
        members = Members(agent.target)
        want = size + 1

        def joined() -> bool:
            alive = members.names(ALIVE) if members else None
            return alive is not None and len(alive) >= want

        waited = wait_for(joined, bound, interval=0.25)
        result["join_seconds"] = None if waited is None else round(time.monotonic() - started, 2)
        result["join_seconds_after_serving"] = (
            None if waited is None else round(time.monotonic() - serving, 2)
        )
        alive_now = members.names(ALIVE)
        result["join_alive_listed"] = None if alive_now is None else len(alive_now)
        run.say(f"join: {result['join_seconds']} s ({result['join_alive_listed']}/{want} alive)")

        # The agent re-gossips every member it learned (as memberlist does): the join
        # phase lasts until that has drained, then idle means idle.
        result["join_gossip_drain_seconds"] = wait_quiet(crowd, plan.quiet, plan.drain_bound)
        run.say(f"join gossip drained after {result['join_gossip_drain_seconds']} s")
        # Idle: no API traffic at all, so the agent's cost is the fleet's alone.
        probe.phase = None
        time.sleep(plan.settle)
        crowd_before = crowd.stats()
        cpu_before = cpu_seconds(agent.process.pid)
        window_started = time.monotonic()
        time.sleep(plan.idle)
        window = time.monotonic() - window_started
        cpu_after = cpu_seconds(agent.process.pid)
        crowd_after = crowd.stats()
        memory = memory_kib(agent.process.pid)
        result["idle_cpu_percent"] = round(100 * (cpu_after - cpu_before) / window, 2)
        result["rss_mib"] = round(memory.get("VmRSS", 0) / 1024, 1)
        result["hwm_mib"] = round(memory.get("VmHWM", 0) / 1024, 1)
        result["idle_bytes_per_s"] = round(
            (sent_by_agent(crowd_after) - sent_by_agent(crowd_before)) / window, 1
        )
        result["idle_udp_bytes_per_s"] = round(
            (crowd_after["udp_bytes_from_agents"] - crowd_before["udp_bytes_from_agents"]) / window,
            1,
        )
        result["crowd_idle_cpu_percent"] = round(
            100 * (crowd_after["cpu_seconds"] - crowd_before["cpu_seconds"]) / window, 2
        )
        run.say(
            f"idle: agent {result['idle_cpu_percent']} % CPU, {result['rss_mib']} MiB, "
            f"{result['idle_bytes_per_s']} B/s sent; crowd {result['crowd_idle_cpu_percent']} % CPU"
        )

        latencies = sorted(members.list_latency(10))
        result["list_members_ms"] = {
            "median": round(statistics.median(latencies) * 1000, 2) if latencies else None,
            "max": round(latencies[-1] * 1000, 2) if latencies else None,
        }
        run.say(f"ListMembers: {result['list_members_ms']} ms")

        # Mass failure: the agent must list every failed member FAILED.
        probe.phase = "failure"
        failed = set(crowd.fail(fraction=plan.fraction))

        def failures_seen() -> bool:
            listed = members.names(FAILED) if members else None
            return listed is not None and failed <= listed

        result["failure_members"] = len(failed)
        result["failure_detect_seconds"] = wait_for(failures_seen, bound)
        listed_failed = members.names(FAILED) or set()
        result["failure_listed"] = len(failed & listed_failed)
        run.say(
            f"failure of {len(failed)}: all listed FAILED after "
            f"{result['failure_detect_seconds']} s ({result['failure_listed']} listed)"
        )

        # Mass join, watched.
        probe.phase = "mass-join"
        watch = agent.watch("WatchMembers", membership_pb2.WatchMembersRequest())
        time.sleep(1.0)
        new = set(crowd.grow(fraction=plan.fraction))

        def new_seen() -> bool:
            alive = members.names(ALIVE) if members else None
            return alive is not None and new <= alive

        result["mass_join_members"] = len(new)
        result["mass_join_seconds"] = wait_for(new_seen, bound)
        time.sleep(2.0)
        watch.stop()
        result["watch"] = watch_counts(watch.snapshot(), new)
        if watch.error is not None:
            result["watch"]["error"] = str(watch.error.code())
        run.say(f"mass join of {len(new)}: {result['mass_join_seconds']} s; {result['watch']}")

        # Flapping, then until the agent agrees with the crowd again.
        probe.phase = "flap"
        before = crowd.stats()
        settle = crowd.flap(plan.flap_rate, plan.flap_seconds, plan.flap_down)
        time.sleep(settle)

        def agrees() -> bool:
            alive = members.names(ALIVE) if members else None
            view = crowd.view()
            return alive is not None and set(view["alive"]) <= alive

        result["flap_converge_seconds"] = wait_for(agrees, bound)
        after = crowd.stats()
        result["flap"] = {
            "members_failed": after["members_failed"] - before["members_failed"],
            "members_recovered": after["members_recovered"] - before["members_recovered"],
            "members_declared_dead": after["members_declared_dead"]
            - before["members_declared_dead"],
            "refutations": after["refutations"] - before["refutations"],
        }
        run.say(f"flap: {result['flap']}; converged {result['flap_converge_seconds']} s after")
        probe.stop()
        result["health"] = probe.summary()
        for phase, numbers in result["health"].items():
            run.say(f"health {phase}: {numbers}")
    finally:
        if probe is not None:
            probe.stop()
        if members is not None:
            members.close()
        if agent is not None:
            try:
                result["agent_exit"] = agent.terminate(timeout=60)
            except Exception as error:
                result["agent_exit"] = f"killed: {type(error).__name__}"
            log = agent.log()
            result["loop_lag"] = loop_lag(log)
            result["agent_errors"] = sum(
                1 for line in log.splitlines() if " ERROR " in line or "Traceback" in line
            )
        final = crowd.stop()
        crowd.kill()
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if final:
        result["crowd"] = {
            key: final.get(key)
            for key in (
                "probes_sent",
                "probes_answered",
                "probes_late",
                "probes_missed",
                "probe_rtt",
                "refutations",
                "accusations_by_kind",
                "agent_suspected",
                "agent_declared_dead",
                "push_pulls_served",
                "push_pull_joins",
                "push_pulls_started",
                "push_pulls_failed",
                "udp_packets_from_agents",
                "udp_bytes_from_agents",
                "packets_by_kind",
                "message_bytes_by_kind",
                "tcp_bytes_from_agents",
                "push_pull_response_bytes",
                "rejected",
                "loop_lag",
                "max_rss_kib",
                "cpu_seconds",
            )
        }
    lag = result.get("loop_lag", {})
    run.say(
        "agent loop lag: "
        + (
            f"max {lag['max_ms']} ms, p99 {lag['p99_ms']} ms"
            if lag.get("max_ms") is not None
            else "n/a"
        )
        + f"; {lag.get('warnings', 0)} warnings (worst {lag.get('worst_warning_ms')})"
    )
    if final:
        crowd_stats = result["crowd"]
        run.say(
            f"crowd: probes {crowd_stats['probes_answered']}/{crowd_stats['probes_sent']} answered "
            f"({crowd_stats['probes_late']} late, {crowd_stats['probes_missed']} missed), "
            f"agent suspected {crowd_stats['agent_suspected']}x, "
            f"{crowd_stats['refutations']} refutations, crowd loop lag {crowd_stats['loop_lag']}"
        )
    return result


# ---------------------------------------------------------------------------- report


def plot(results: list[dict[str, Any]], directory: Path) -> list[Path]:
    """PNG plots beside the JSON; none (with a hint) when matplotlib is missing."""
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
    except ImportError:
        print("matplotlib is not installed: no plots (pip install -r requirements-bench.txt)")
        return []
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")
    sizes = [r["size"] for r in results]
    written = []

    ticker: Any = importlib.import_module("matplotlib.ticker")
    colors = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]

    def save(name: str, title: str, ylabel: str) -> None:
        pyplot.title(title)
        pyplot.xlabel("members (N)")
        pyplot.ylabel(ylabel)
        pyplot.xscale("log")
        pyplot.xticks(sizes, [str(size) for size in sizes])
        pyplot.gca().xaxis.set_minor_formatter(ticker.NullFormatter())
        pyplot.gca().yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        pyplot.gca().yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
        pyplot.grid(True, alpha=0.3)
        pyplot.legend()
        path = directory / name
        pyplot.savefig(path, dpi=100, bbox_inches="tight")
        pyplot.close()
        written.append(path)

    pyplot.figure(figsize=(7, 4.5))
    for number, phase in enumerate(PHASES):
        for stat, style in (("p99_ms", "-o"), ("max_ms", ":x")):
            values = [r.get("health", {}).get(phase, {}).get(stat) for r in results]
            if any(v is not None for v in values):
                pyplot.plot(
                    sizes,
                    [float("nan") if v is None else v for v in values],
                    style,
                    color=colors[number % len(colors)],
                    label=f"{phase} {stat[:-3]}",
                )
    pyplot.yscale("log")
    save("crowd-health.png", "Health/Check latency per phase", "ms")
    for key, name, title, ylabel in (
        ("idle_cpu_percent", "crowd-idle-cpu.png", "Agent CPU at idle", "% of one core"),
        ("rss_mib", "crowd-rss.png", "Agent RSS", "MiB"),
        ("idle_bytes_per_s", "crowd-bytes.png", "Bytes/s sent by the agent at idle", "B/s"),
    ):
        pyplot.figure(figsize=(7, 4.5))
        values = [r.get(key) for r in results]
        pyplot.plot(sizes, [float("nan") if v is None else v for v in values], "-o", label=key)
        save(name, title, ylabel)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="crowd sizes (default 100 1000 5000)")
    parser.add_argument("--quick", action="store_true", help="N = 100 and 500, short phases")
    parser.add_argument("--profile", default="lan", choices=("lan", "wan", "local"))
    parser.add_argument("--encrypt", action="store_true", help="gossip with a fresh AES key")
    parser.add_argument("--cluster-label", default="")
    parser.add_argument("--tag", action="append", default=[], help="crowd member tag KEY=VALUE")
    parser.add_argument("--no-data-dir", action="store_true", help="run the agent without one")
    parser.add_argument("--output", type=Path, help="JSON path (default docs/scale/crowd.json)")
    parser.add_argument(
        "--work-dir", type=Path, help="keep logs and data here (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    sizes = args.sizes or ([100, 500] if args.quick else [100, 1000, 5000])
    output = args.output or ROOT / "docs" / "scale" / (
        "crowd-quick.json" if args.quick else "crowd.json"
    )
    # Dense loop-lag samples: the bench hunts 20 ms stalls (the default samples twice
    # a second, cheap at idle).
    agent_args = ["--profile", args.profile, "--loop-lag-interval", "0.05"]
    crowd_args = ["--profile", args.profile, "--block", "1"]
    if args.encrypt:
        key = base64.b64encode(os.urandom(32)).decode()
        agent_args += ["--encrypt", key]
        crowd_args += ["--encrypt", key]
    if args.cluster_label:
        agent_args += ["--cluster-label", args.cluster_label]
        crowd_args += ["--cluster-label", args.cluster_label]
    for tag in args.tag:
        crowd_args += ["--tag", tag]
    results = []
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as temporary:
        work = args.work_dir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        for size in sizes:
            print(f"N = {size}", flush=True)
            run = Run(size, plan, Path(work), agent_args, crowd_args, not args.no_data_dir)
            try:
                results.append(run_size(run))
            except Exception as error:
                run.result["error"] = f"{type(error).__name__}: {error}"
                print(f"  [N={size}] failed: {run.result['error']}", flush=True)
                results.append(run.result)
    report = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "profile": args.profile,
        "encrypt": args.encrypt,
        "plan": plan.__dict__,
        "results": results,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {output}")
    for path in plot(results, output.parent):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
