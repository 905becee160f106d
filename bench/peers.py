"""controlplane agents beside HashiCorp Serf agents, measured the same way in the same run.

Prints figures and ratios; asserts nothing. Serf is Debian's `serf` package (a real
Serf 0.8 agent on memberlist); the bench installs nothing. Without it, only
controlplane is measured:

    apt-get install -y serf                   # as root, once
    .venv/bin/python bench/peers.py           # every part, about 25 minutes
    .venv/bin/python bench/peers.py --part detection --trials 8
    .venv/bin/python bench/peers.py --part false-positives --seconds 60
    .venv/bin/python bench/peers.py --part idle --sizes 5 10 20 30 --window 30

Both systems run N agents as separate processes on loopback addresses of their own
(127.91.C.1..N, one block per cluster, port 7946), with their default (`lan`)
timing, each agent joined through the first. An agent's log is read as it is
written; a line's time is when the bench read it.

- detection: SIGKILL one member (not the seed) a random 2-5 s after the cluster
  converged; the time until every live member has logged it as failed (Serf:
  `EventMemberFailed`, controlplane: `member-failed`), and until the first did.
  Trials interleave the systems (the order alternates), so a burst of load elsewhere
  on the machine falls on both alike. Median, min, max and the ratio of medians.
- false positives: nobody is killed, so every failure an agent logs is false. Idle,
  then with every core busy (one spinning process per core, started by the bench).
- idle: per agent, CPU (user + system, /proc/PID/stat), resident memory (VmRSS) and
  bytes sent over UDP and TCP (IP packets captured on `lo`, headers included, for
  the cluster's addresses only; needs CAP_NET_RAW, else n/a), over a window of
  quiet after the cluster converged.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.testing.agents import clean_environment

PORT = 7946
# Every cluster gets its own /24 of 127.91.0.0/16, so no agent binds an address a
# previous cluster's sockets may still hold.
NET_PREFIX = (127, 91)
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Agent:
    """One agent process whose output is read, line by line, as it is written."""

    name: str
    host: str
    process: subprocess.Popen[bytes]
    lines: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start_reader(self) -> None:
        thread = threading.Thread(target=self._read, name=f"read-{self.name}", daemon=True)
        thread.start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        for raw in stream:
            now = time.monotonic()
            with self._lock:
                self.lines.append((now, raw.decode(errors="replace")))

    def snapshot(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES


class System:
    """How to start one system's agent and read its log."""

    name = ""

    def command(self, name: str, host: str, seed: str | None) -> list[str]:
        raise NotImplementedError

    def ready(self, line: str) -> bool:
        raise NotImplementedError

    def joined(self, line: str) -> int:
        """How many members this log line reports as joined (0: not a join line)."""
        raise NotImplementedError

    def failed(self, line: str) -> list[str]:
        """Names this log line reports as failed."""
        raise NotImplementedError

    def start(self, name: str, host: str, seed: str | None) -> Agent:
        process = subprocess.Popen(
            self.command(name, host, seed),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_environment(),
            cwd=REPO,
        )
        agent = Agent(name, host, process)
        agent.start_reader()
        return agent


class Serf(System):
    name = "serf"

    def command(self, name: str, host: str, seed: str | None) -> list[str]:
        command = ["serf", "agent", "-node", name, "-bind", f"{host}:{PORT}"]
        command += ["-rpc-addr", f"{host}:7373", "-log-level", "info"]
        if seed is not None:
            command += ["-join", f"{seed}:{PORT}"]
        return command

    def ready(self, line: str) -> bool:
        return "Serf agent running!" in line

    def joined(self, line: str) -> int:
        return 1 if "serf: EventMemberJoin: " in line else 0

    def failed(self, line: str) -> list[str]:
        _, marker, rest = line.partition("serf: EventMemberFailed: ")
        return rest.split()[:1] if marker else []


class Controlplane(System):
    name = "controlplane"

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        self.extra_args = list(extra_args)

    def command(self, name: str, host: str, seed: str | None) -> list[str]:
        command = [sys.executable, "-m", "controlplane.cli", "agent", "--node", name]
        command += ["--bind", host, "--port", str(PORT), "--log-level", "info"]
        command += ["--shutdown-grace", "1", *self.extra_args]
        if seed is not None:
            command += ["--join", f"{seed}:{PORT}"]
        return command

    def ready(self, line: str) -> bool:
        return " serving on " in line

    @staticmethod
    def _names(line: str, marker: str) -> tuple[list[str], int]:
        _, found, rest = line.partition(marker)
        if not found:
            return [], 0
        names, _, more = rest.strip().partition(" and ")
        extra = int(more.split()[0]) if more else 0
        return [n.strip() for n in names.split(",") if n.strip()], extra

    def joined(self, line: str) -> int:
        names, extra = self._names(line, "controlplane.gossip: member-join: ")
        return len(names) + extra

    def failed(self, line: str) -> list[str]:
        return self._names(line, "controlplane.gossip: member-failed: ")[0]


class Cluster:
    """N agents of one system; the first is every other's seed."""

    _blocks = iter(range(1, 1_000_000))

    def __init__(self, system: System, n: int) -> None:
        block = next(self._blocks) % 250 + 1
        self.system = system
        self.hosts = [f"{NET_PREFIX[0]}.{NET_PREFIX[1]}.{block}.{i + 1}" for i in range(n)]
        self.agents: list[Agent] = []

    def start(self, timeout: float = 90.0) -> bool:
        """Starts every agent and waits until each has seen all the others join."""
        n = len(self.hosts)
        seed = self.system.start("m00", self.hosts[0], None)
        self.agents.append(seed)
        if not self._wait(lambda: self._is_ready(seed), 30.0):
            return False
        for index, host in enumerate(self.hosts[1:], start=1):
            self.agents.append(self.system.start(f"m{index:02d}", host, self.hosts[0]))
        # A Serf agent reports itself as joined; a controlplane agent does not.
        others = n if isinstance(self.system, Serf) else n - 1
        return self._wait(lambda: all(self._joins(a) >= others for a in self.agents), timeout)

    def _is_ready(self, agent: Agent) -> bool:
        return any(self.system.ready(line) for _, line in agent.snapshot())

    def _joins(self, agent: Agent) -> int:
        return sum(self.system.joined(line) for _, line in agent.snapshot())

    def failures(self, agent: Agent, since: float) -> list[tuple[float, str]]:
        return [
            (when, name)
            for when, line in agent.snapshot()
            if when >= since
            for name in self.system.failed(line)
        ]

    def _wait(self, predicate: object, timeout: float) -> bool:
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if any(a.process.poll() is not None for a in self.agents):
                return False
            time.sleep(0.05)
        return bool(predicate())

    def stop(self) -> None:
        for agent in self.agents:
            if agent.process.poll() is None:
                agent.process.kill()
        for agent in self.agents:
            agent.kill()

    def logs(self) -> str:
        return "".join(line for agent in self.agents for _, line in agent.snapshot()[-20:])


@contextlib.contextmanager
def running(system: System, n: int) -> Iterator[Cluster]:
    cluster = Cluster(system, n)
    try:
        if not cluster.start():
            raise RuntimeError(f"{system.name}: {n} agents did not converge\n{cluster.logs()}")
        yield cluster
    finally:
        cluster.stop()


# ---------------------------------------------------------------------- detection


@dataclass
class Detection:
    first: float
    last: float


def detect_once(system: System, n: int, rng: random.Random) -> Detection | None:
    with running(system, n) as cluster:
        time.sleep(rng.uniform(2.0, 5.0))
        victim = cluster.agents[rng.randrange(1, n)]
        others = [a for a in cluster.agents if a is not victim]
        killed_at = time.monotonic()
        victim.process.send_signal(signal.SIGKILL)
        deadline = killed_at + 60.0
        seen: dict[str, float] = {}
        while time.monotonic() < deadline and len(seen) < len(others):
            for agent in others:
                if agent.name in seen:
                    continue
                for when, name in cluster.failures(agent, killed_at):
                    if name == victim.name:
                        seen[agent.name] = when - killed_at
                        break
            time.sleep(0.02)
        if len(seen) < len(others):
            return None
        return Detection(min(seen.values()), max(seen.values()))


def part_detection(systems: Sequence[System], sizes: Sequence[int], trials: int) -> None:
    print("== Failure detection: SIGKILL one member; seconds until every live member (and the")
    print("   first) logged it as failed. Trials interleaved, the order alternating. ==")
    rng = random.Random(20261128)
    results: dict[tuple[str, int], list[Detection]] = {}
    misses: dict[tuple[str, int], int] = {}
    for trial in range(trials):
        for n in sizes:
            order = list(systems) if trial % 2 == 0 else list(reversed(systems))
            for system in order:
                result = detect_once(system, n, random.Random(rng.getrandbits(64)))
                key = (system.name, n)
                if result is None:
                    misses[key] = misses.get(key, 0) + 1
                else:
                    results.setdefault(key, []).append(result)
                shown = "missed" if result is None else f"{result.last:.2f}s"
                print(f"  trial {trial + 1:>2}  N={n:<3} {system.name:<13} {shown}", flush=True)
    print()
    print(
        f"{'N':>3}  {'system':<13} {'trials':>6} {'median':>7} {'min':>6} {'max':>6}"
        f"   {'first: median':>13}  {'missed':>6}"
    )
    for n in sizes:
        medians: dict[str, float] = {}
        for system in systems:
            runs = results.get((system.name, n), [])
            missed = misses.get((system.name, n), 0)
            if not runs:
                print(f"{n:>3}  {system.name:<13} {0:>6}  (no result, {missed} missed)")
                continue
            last = [r.last for r in runs]
            first = [r.first for r in runs]
            medians[system.name] = statistics.median(last)
            print(
                f"{n:>3}  {system.name:<13} {len(runs):>6} {statistics.median(last):>6.2f}s"
                f" {min(last):>5.2f}s {max(last):>5.2f}s   {statistics.median(first):>12.2f}s"
                f"  {missed:>6}"
            )
        if "serf" in medians and "controlplane" in medians:
            ratio = medians["controlplane"] / medians["serf"]
            print(f"     ratio of medians controlplane / serf: {ratio:.2f}x (goal <= 0.8)")
    print(flush=True)


# ---------------------------------------------------------------------- false positives


@contextlib.contextmanager
def busy_cores() -> Iterator[int]:
    """One spinning process per core for the duration of the block."""
    count = os.cpu_count() or 1
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield count
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait(10)


def count_false_failures(system: System, n: int, seconds: float) -> tuple[int, int]:
    """(failure log lines, members ever logged failed) over `seconds`; nobody is killed."""
    with running(system, n) as cluster:
        time.sleep(2.0)
        since = time.monotonic()
        time.sleep(seconds)
        events = [f for agent in cluster.agents for f in cluster.failures(agent, since)]
        return len(events), len({name for _, name in events})


def part_false_positives(systems: Sequence[System], n: int, seconds: float) -> None:
    print(f"== False positives: {n} agents, {seconds:.0f} s each, nobody killed: every member-")
    print("   failed line is false (lines anywhere / distinct members accused) ==")
    for busy in (False, True):
        label = "idle" if not busy else f"every core busy ({os.cpu_count()} spinners)"
        for system in systems:
            with busy_cores() if busy else contextlib.nullcontext():
                lines, members = count_false_failures(system, n, seconds)
            print(
                f"  {label:<28} {system.name:<13} {lines:>4} lines, {members:>3} members",
                flush=True,
            )
    print()


# ---------------------------------------------------------------------- idle cost

SO_ATTACH_FILTER = 26
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
ETH_HEADER = 14


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


class LoopbackCounter:
    """Bytes of IP packets sent from 127.91.0.0/16 on `lo`, by source address and
    protocol, from a packet socket (a kernel filter keeps everything else out)."""

    def __init__(self) -> None:
        self.bytes: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._stop = False
        self.error = ""
        try:
            self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self._socket.bind(("lo", 0))
        except (OSError, AttributeError) as error:
            self.error = str(error)
            return
        prefix = (NET_PREFIX[0] << 24) | (NET_PREFIX[1] << 16)
        program = [
            # ldh [12] (ethertype) ; jeq IPv4 ? next : drop
            (0x28, 0, 0, 12),
            (0x15, 0, 4, 0x0800),
            # ld [26] (IPv4 source) ; and 0xffff0000 ; jeq prefix ? accept : drop
            (0x20, 0, 0, ETH_HEADER + 12),
            (0x54, 0, 0, 0xFFFF0000),
            (0x15, 0, 1, prefix),
            (0x06, 0, 0, 0x40000),
            (0x06, 0, 0, 0),
        ]
        filters = (_SockFilter * len(program))(*[_SockFilter(*op) for op in program])
        fprog = _SockFprog(len(program), filters)
        self._socket.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
        self._socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="lo-counter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, address = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] != PACKET_OUTGOING or len(data) < ETH_HEADER + 20:
                continue
            ip = data[ETH_HEADER:]
            total = struct.unpack_from("!H", ip, 2)[0]
            key = (socket.inet_ntoa(ip[12:16]), ip[9])
            with self._lock:
                self.bytes[key] = self.bytes.get(key, 0) + total

    def snapshot(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self.bytes)

    def close(self) -> None:
        self._stop = True
        if not self.error:
            self._socket.close()


@dataclass
class IdleCost:
    cpu_percent: float
    rss_mb: float
    udp_bps: float | None
    tcp_bps: float | None


def idle_cost(
    system: System, n: int, settle: float, window: float, counter: LoopbackCounter
) -> IdleCost:
    with running(system, n) as cluster:
        time.sleep(settle)
        cpu_before = [a.cpu_seconds() for a in cluster.agents]
        bytes_before = counter.snapshot()
        started = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - started
        cpu_after = [a.cpu_seconds() for a in cluster.agents]
        bytes_after = counter.snapshot()
        rss = [a.rss_bytes() for a in cluster.agents]
        cpu = sum(b - a for a, b in zip(cpu_before, cpu_after, strict=True))

        def rate(protocol: int) -> float | None:
            if counter.error:
                return None
            sent = sum(
                bytes_after.get((h, protocol), 0) - bytes_before.get((h, protocol), 0)
                for h in cluster.hosts
            )
            return sent / elapsed / n

        return IdleCost(
            100.0 * cpu / elapsed / n,
            statistics.mean(rss) / 1e6,
            rate(socket.IPPROTO_UDP),
            rate(socket.IPPROTO_TCP),
        )


def part_idle(
    systems: Sequence[System], sizes: Sequence[int], settle: float, window: float
) -> None:
    print(f"== Idle cost per agent: {window:.0f} s window, {settle:.0f} s after convergence ==")
    counter = LoopbackCounter()
    if counter.error:
        print(f"  (no packet capture on lo: {counter.error}; bytes are n/a)")
    print(f"{'N':>3}  {'system':<13} {'CPU':>7} {'RSS':>8} {'UDP sent':>10} {'TCP sent':>10}")
    try:
        for n in sizes:
            costs: dict[str, IdleCost] = {}
            for system in systems:
                cost = idle_cost(system, n, settle, window, counter)
                costs[system.name] = cost
                print(
                    f"{n:>3}  {system.name:<13} {cost.cpu_percent:>6.2f}% {cost.rss_mb:>6.1f}MB"
                    f" {_bps(cost.udp_bps):>10} {_bps(cost.tcp_bps):>10}",
                    flush=True,
                )
            if "serf" in costs and "controlplane" in costs:
                ours, theirs = costs["controlplane"], costs["serf"]
                print(
                    f"     controlplane / serf: CPU {_ratio(ours.cpu_percent, theirs.cpu_percent)},"
                    f" RSS {_ratio(ours.rss_mb, theirs.rss_mb)} (goal <= 3x), UDP "
                    f"{_ratio(ours.udp_bps, theirs.udp_bps)}, TCP "
                    f"{_ratio(ours.tcp_bps, theirs.tcp_bps)}"
                )
    finally:
        counter.close()
    print()


def _bps(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} B/s"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--part",
        action="append",
        choices=("detection", "false-positives", "idle"),
        help="run only this part (repeatable); default: all",
    )
    parser.add_argument(
        "--system",
        action="append",
        choices=("serf", "controlplane"),
        help="measure only this system (repeatable); default: both",
    )
    parser.add_argument("--trials", type=int, default=10, help="detection trials per N")
    parser.add_argument("--detect-sizes", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--seconds", type=float, default=60.0, help="false-positive run length")
    parser.add_argument("--fp-size", type=int, default=10, help="agents in false-positive runs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 30], help="idle N")
    parser.add_argument("--window", type=float, default=30.0, help="idle measurement window")
    parser.add_argument("--settle", type=float, default=10.0, help="idle wait after convergence")
    parser.add_argument(
        "--agent-arg",
        action="append",
        default=[],
        help="extra controlplane agent flag, e.g. --agent-arg=--event-loop=asyncio (repeatable)",
    )
    args = parser.parse_args(argv)
    parts = args.part or ["detection", "false-positives", "idle"]

    wanted = set(args.system or ["serf", "controlplane"])
    systems: list[System] = []
    if "serf" not in wanted:
        pass
    elif shutil.which("serf"):
        systems.append(Serf())
        version = subprocess.run(["serf", "version"], capture_output=True, text=True, check=False)
        print(f"serf: {version.stdout.splitlines()[0] if version.stdout else '?'}")
    else:
        print("serf is not installed: measuring controlplane alone. Debian/Ubuntu, as root:")
        print("    apt-get install -y serf")
    if "controlplane" in wanted:
        systems.append(Controlplane(args.agent_arg))
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}\n")

    if "detection" in parts:
        part_detection(systems, args.detect_sizes, args.trials)
    if "false-positives" in parts:
        part_false_positives(systems, args.fp_size, args.seconds)
    if "idle" in parts:
        part_idle(systems, args.sizes, args.settle, args.window)


if __name__ == "__main__":
    main()
