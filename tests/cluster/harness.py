"""Agents in containers for the cluster tests: a user-defined network of our own,
one container per agent, faults injected through the Docker API, and gRPC from
the host straight to each container's address.

Every wait is bounded; every container and the network are removed at the end,
even when a test fails. Traffic only ever goes to the test's own containers.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import docker
import docker.errors
import docker.types
import grpc
from docker.models.containers import Container
from docker.models.networks import Network
from testcontainers.core.container import DockerContainer

from controlplane.client.health import HealthStatus, check_health
from controlplane.election.config import ElectionConfig
from controlplane.gossip.config import GossipConfig
from controlplane.gossip.formulas import suspicion_bounds
from controlplane.membership.config import MembershipConfig
from controlplane.v1 import membership_pb2, membership_pb2_grpc

T = TypeVar("T")

AGENT_PORT = 7946
LABEL = "io.controlplane.test"
LABEL_VALUE = "cluster"
# Candidate subnets: 10.213.0.0/24 ... 10.250.255.0/24, skipping any that overlaps
# an existing Docker network or a route of this host.
SUBNET_SPACE = ipaddress.ip_network("10.213.0.0/16")
SUBNET_SPACE_COUNT = 38

ALIVE = membership_pb2.MEMBER_STATUS_ALIVE
FAILED = membership_pb2.MEMBER_STATUS_FAILED
LEFT = membership_pb2.MEMBER_STATUS_LEFT
LEAVING = membership_pb2.MEMBER_STATUS_LEAVING
STATUS_NAMES = {v.number: v.name for v in membership_pb2.MemberStatus.DESCRIPTOR.values}


# ---------------------------------------------------------------------------
# Timing of the `local` profile, from the agent's own configuration classes
# ---------------------------------------------------------------------------

LOCAL = GossipConfig.local()
MEMBERSHIP = MembershipConfig()
ELECTION = ElectionConfig()
# Slack for one broadcast to reach every member (gossip every 100 ms, fan-out 3,
# a few retransmissions) plus the tests' own polling period.
DISSEMINATION = 1.0
POLL = 0.25


def suspicion_window(n: int) -> tuple[float, float]:
    """(minimum, maximum) suspicion timeout in an n-member cluster (memberlist)."""
    return suspicion_bounds(
        LOCAL.suspicion_mult, LOCAL.suspicion_max_timeout_mult, n, LOCAL.probe_interval
    )


def detection_bound(n: int) -> float:
    """Upper bound on the time from a member's death to FAILED everywhere.

    * first failed probe: each of the n-1 others probes the members round-robin,
      one per probe interval, so the dead member is probed within (n - 1) intervals
      (the probe itself, with its indirect probes, ends within that interval);
    * suspicion: at most the maximum timeout (no confirmation arrived at all;
      one confirmation brings it down to the minimum);
    * the dead broadcast reaches everyone within DISSEMINATION, polling within POLL.
    """
    _, maximum = suspicion_window(n)
    return (n - 1) * LOCAL.probe_interval + maximum + DISSEMINATION + POLL


def isolated_detection_bound(n: int) -> float:
    """Upper bound for a member cut off from everyone to list the others FAILED.

    Lifeguard: every probe of a cut-off member fails, so its own awareness
    (health) score climbs and stretches its probe interval up to
    `awareness_max_multiplier` times; nobody confirms its suspicions, so each
    runs to the maximum timeout. The last of the n-1 others is probed within
    (n - 1) stretched intervals.
    """
    _, maximum = suspicion_window(n)
    stretched = LOCAL.probe_interval * LOCAL.awareness_max_multiplier
    return (n - 1) * stretched + maximum + DISSEMINATION + POLL


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, str(status))


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = POLL,
    describe: Callable[[], object] | None = None,
) -> tuple[T, float]:
    """Polls until predicate() returns a truthy value; returns it and the time taken.

    Raises AssertionError naming `what` (and the state `describe` gives) after
    `timeout` seconds.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        value = predicate()
        if value:
            return value, time.monotonic() - start
        if time.monotonic() >= deadline:
            state = describe() if describe is not None else None
            raise AssertionError(f"not within {timeout:.1f} s: {what}; last state: {state}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


def _used_networks(client: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            subnet = config.get("Subnet")
            if subnet:
                with_v4 = ipaddress.ip_network(subnet, strict=False)
                if isinstance(with_v4, ipaddress.IPv4Network):
                    used.append(with_v4)
    try:
        with open("/proc/net/route") as routes:
            next(routes)
            for line in routes:
                fields = line.split()
                dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
                mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
                if int(mask) == 0:
                    continue  # the default route overlaps everything; it is no subnet
                used.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    except OSError:
        pass
    return used


def create_network(
    client: docker.DockerClient, prefix: str
) -> tuple[Network, ipaddress.IPv4Network]:
    """A bridge network with a unique name and a free private /24."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    first = os.getpid() % 256
    last_error: Exception | None = None
    for i in range(SUBNET_SPACE_COUNT * 256):
        index = (first + i) % (SUBNET_SPACE_COUNT * 256)
        base = int(SUBNET_SPACE.network_address) + index * 256
        subnet = ipaddress.IPv4Network((base, 24))
        if any(subnet.overlaps(used) for used in _used_networks(client)):
            continue
        try:
            network = client.networks.create(
                name,
                driver="bridge",
                ipam=docker.types.IPAMConfig(
                    pool_configs=[docker.types.IPAMPool(subnet=str(subnet))]
                ),
                labels={LABEL: LABEL_VALUE},
            )
        except docker.errors.APIError as error:  # raced with another network: next one
            last_error = error
            if i >= 8:
                break
            continue
        return network, subnet
    raise RuntimeError(f"no free /24 in {SUBNET_SPACE} for a test network: {last_error}")


# ---------------------------------------------------------------------------
# Agents
# ---------------------------------------------------------------------------


@dataclass
class Agent:
    """One agent container."""

    name: str
    ip: str
    args: tuple[str, ...]
    testcontainer: DockerContainer | None = None
    _channel: grpc.Channel | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.ip}:{AGENT_PORT}"

    @property
    def container(self) -> Container:
        assert self.testcontainer is not None, f"{self.name} was never started"
        wrapped: Container = self.testcontainer.get_wrapped_container()
        return wrapped

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(
                self.address,
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 500),
                    ("grpc.enable_retries", 0),
                ],
            )
        return self._channel

    def reset_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def membership(self) -> membership_pb2_grpc.MembershipStub:
        return membership_pb2_grpc.MembershipStub(self.channel())

    # -- gRPC helpers -------------------------------------------------------

    def list_members(self, timeout: float = 2.0) -> dict[str, int]:
        """{name: MemberStatus} as this agent sees it."""
        response = self.membership().ListMembers(
            membership_pb2.ListMembersRequest(), timeout=timeout
        )
        return {m.name: m.status for m in response.members}

    def try_list_members(self, timeout: float = 2.0) -> dict[str, int] | None:
        try:
            return self.list_members(timeout)
        except grpc.RpcError:
            return None

    def get_leader(self, timeout: float = 2.0) -> membership_pb2.Leader | None:
        response = self.membership().GetLeader(membership_pb2.GetLeaderRequest(), timeout=timeout)
        return response.leader if response.HasField("leader") else None

    def health(self, service: str = "", timeout: float = 2.0) -> HealthStatus | None:
        try:
            return check_health(self.channel(), service=service, timeout=timeout)
        except grpc.RpcError:
            return None

    # -- Docker helpers -----------------------------------------------------

    def exec(self, *command: str) -> tuple[int, str]:
        result = self.container.exec_run(list(command))
        return result.exit_code, result.output.decode(errors="replace")

    def exec_view(self) -> dict[str, str]:
        """{member: status name} as listed by this agent, asked inside its container
        (works while the container has no network)."""
        code, output = self.exec(
            "python",
            "-c",
            "import grpc\n"
            "from controlplane.v1 import membership_pb2 as m, membership_pb2_grpc as g\n"
            "c = grpc.insecure_channel('127.0.0.1:7946')\n"
            "r = g.MembershipStub(c).ListMembers(m.ListMembersRequest(), timeout=2)\n"
            "for x in r.members: print(x.name, m.MemberStatus.Name(x.status))\n",
        )
        if code != 0:
            return {}
        return dict(line.split(" ", 1) for line in output.splitlines() if line.count(" ") == 1)

    def status(self) -> str:
        self.container.reload()
        return str(self.container.status)

    def logs(self) -> str:
        try:
            return str(self.container.logs(timestamps=True).decode(errors="replace"))
        except docker.errors.APIError as error:
            return f"<no logs: {error}>"


class Cluster:
    """N agents on a network of their own, with fault injection.

    Agents are named n1..nN (node name, container host name and network alias),
    at fixed addresses .11, .12, ... of the network, and run with
    `--profile local`. Each joins every other agent by alias, so any of them can
    be restarted and find the cluster again. With `shared_alias`, every agent
    also answers to that one name (Docker's DNS then gives it one A record per
    container, as a headless Service does) and joins through it alone.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        size: int,
        extra_args: Callable[[int, str], Sequence[str]] | None = None,
        prefix: str = "cp-cluster",
        shared_alias: str | None = None,
    ) -> None:
        self.client = client
        self.image = image
        self.network, self.subnet = create_network(client, prefix)
        hosts = list(self.subnet.hosts())
        self.agents: list[Agent] = []
        self._blackholes: list[tuple[Agent, str]] = []
        self.shared_alias = shared_alias
        names = [f"n{i + 1}" for i in range(size)]
        for i, name in enumerate(names):
            joins = [arg for other in names if other != name for arg in ("--join", other)]
            if shared_alias is not None:
                joins = ["--join", shared_alias]
            extra = tuple(extra_args(i, name)) if extra_args is not None else ()
            args = (
                "--node",
                name,
                "--bind",
                "0.0.0.0",
                "--advertise",
                str(hosts[10 + i]),
                "--port",
                str(AGENT_PORT),
                "--profile",
                "local",
                *joins,
                *extra,
            )
            self.agents.append(Agent(name, str(hosts[10 + i]), args))
        self._closed = False

    def __getitem__(self, name: str) -> Agent:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.agents]

    # -- lifecycle ----------------------------------------------------------

    def _container(self, agent: Agent) -> DockerContainer:
        aliases = [agent.name, *([self.shared_alias] if self.shared_alias else [])]
        endpoint = self.client.api.create_endpoint_config(ipv4_address=agent.ip, aliases=aliases)
        return (
            DockerContainer(self.image)
            .with_name(f"{self.network.name}-{agent.name}")
            .with_command(list(agent.args))
            .with_kwargs(
                hostname=agent.name,
                network=self.network.name,
                networking_config={self.network.name: endpoint},
                labels={LABEL: LABEL_VALUE},
                # Agents only talk to each other and to the host.
                dns_search=[],
            )
        )

    def start(self, timeout: float = 60.0) -> float:
        """Starts every agent and waits until all list all ALIVE; returns the time."""
        start = time.monotonic()
        for agent in self.agents:
            agent.testcontainer = self._container(agent)
            agent.testcontainer.start()
        self.wait_converged(self.agents, timeout=timeout)
        return time.monotonic() - start

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        for agent in self.agents:
            agent.reset_channel()
            if agent.testcontainer is None:
                continue
            try:
                container = agent.container
                container.reload()
                if container.status == "paused":
                    container.unpause()
                agent.testcontainer.stop()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:
                errors.append(f"{agent.name}: {error}")
        try:
            self.network.remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            errors.append(f"network {self.network.name}: {error}")
        if errors:
            raise RuntimeError("cleanup failed: " + "; ".join(errors))

    def logs(self) -> str:
        return "\n".join(
            f"----- {a.name} ({a.ip}) -----\n{a.logs()}"
            for a in self.agents
            if a.testcontainer is not None
        )

    # -- faults -------------------------------------------------------------

    def _route(self, agent: Agent, action: str, destination: str) -> None:
        """Runs the host's `ip route` inside the agent's network namespace."""
        agent.container.reload()
        pid = str(agent.container.attrs["State"]["Pid"])
        subprocess.run(
            ["nsenter", "-t", pid, "-n", "ip", "route", action, "blackhole", f"{destination}/32"],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def partition(self, *groups: Sequence[Agent]) -> None:
        """Cuts the network between groups, keeping each group whole: every agent
        drops what it would send to agents of the other groups (blackhole routes in
        its own network namespace). The host still reaches every agent."""
        for group in groups:
            others = [a for a in self.agents if a not in group]
            for agent in group:
                for other in others:
                    self._route(agent, "add", other.ip)
                    self._blackholes.append((agent, other.ip))

    def block_udp(self, agent: Agent) -> None:
        """Drops every datagram between `agent` and the other agents, both ways, while
        TCP (the gRPC port) keeps working: a firewall that filters UDP only (iptables
        rules in the agent's own network namespace, gone with the container)."""
        agent.container.reload()
        pid = str(agent.container.attrs["State"]["Pid"])
        for other in self.agents:
            if other is agent:
                continue
            for chain, side in (("INPUT", "-s"), ("OUTPUT", "-d")):
                subprocess.run(
                    [
                        "nsenter",
                        "-t",
                        pid,
                        "-n",
                        "iptables",
                        "-A",
                        chain,
                        "-p",
                        "udp",
                        side,
                        other.ip,
                        "-j",
                        "DROP",
                    ],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )

    def heal_partition(self) -> None:
        while self._blackholes:
            agent, destination = self._blackholes.pop()
            self._route(agent, "del", destination)

    def pause(self, agent: Agent) -> None:
        agent.container.pause()

    def unpause(self, agent: Agent) -> None:
        agent.container.unpause()

    def kill(self, agent: Agent) -> None:
        agent.container.kill(signal="SIGKILL")
        agent.container.wait(timeout=30)

    def restart(self, agent: Agent) -> None:
        """Starts a stopped or killed container again (same address, same arguments)."""
        agent.reset_channel()
        agent.container.start()

    def move(self, agent: Agent, ip: str, args: Sequence[str] | None = None) -> None:
        """Replaces the agent's container by a new one at address `ip`, as a
        rescheduled pod is: same name and aliases, another address, and `args`
        (default: the old ones) advertising the new address."""
        agent.reset_channel()
        if agent.testcontainer is not None:
            agent.testcontainer.stop()  # removes the container, and its DNS records
        old = list(agent.args if args is None else args)
        if "--advertise" in old:
            old[old.index("--advertise") + 1] = ip
        agent.ip, agent.args = ip, tuple(old)
        agent.testcontainer = self._container(agent)
        agent.testcontainer.start()

    def stop(self, agent: Agent, timeout: int) -> int:
        """`docker stop`: SIGTERM, SIGKILL after `timeout` s; returns the exit code."""
        agent.container.stop(timeout=timeout)
        result = agent.container.wait(timeout=timeout + 30)
        return int(result["StatusCode"])

    # -- views --------------------------------------------------------------

    def views(self, observers: Iterable[Agent] | None = None) -> dict[str, dict[str, str] | None]:
        """What each observer lists: {observer: {member: status name}} (None: no answer)."""
        result: dict[str, dict[str, str] | None] = {}
        for agent in observers if observers is not None else self.agents:
            members = agent.try_list_members()
            result[agent.name] = (
                None
                if members is None
                else {name: status_name(status) for name, status in sorted(members.items())}
            )
        return result

    def all_see(
        self, observers: Iterable[Agent], subjects: Iterable[Agent], statuses: Sequence[int]
    ) -> bool:
        subject_names = [s.name for s in subjects]
        for observer in observers:
            members = observer.try_list_members()
            if members is None:
                return False
            if any(members.get(name) not in statuses for name in subject_names):
                return False
        return True

    def wait_status(
        self,
        observers: Sequence[Agent],
        subjects: Sequence[Agent],
        statuses: Sequence[int],
        timeout: float,
        what: str,
    ) -> float:
        _, elapsed = wait_until(
            lambda: self.all_see(observers, subjects, statuses),
            timeout,
            what,
            describe=lambda: self.views(observers),
        )
        return elapsed

    def wait_converged(self, agents: Sequence[Agent], timeout: float) -> float:
        """Every agent in `agents` answers and lists exactly those agents ALIVE... and
        SERVING on health."""

        def converged() -> bool:
            if not self.all_see(agents, agents, [ALIVE]):
                return False
            return all(a.health() == HealthStatus.SERVING for a in agents)

        _, elapsed = wait_until(
            converged,
            timeout,
            f"{[a.name for a in agents]} all ALIVE in every view and SERVING",
            describe=lambda: self.views(agents),
        )
        return elapsed


# ---------------------------------------------------------------------------
# Event watching
# ---------------------------------------------------------------------------


@dataclass
class SeenEvent:
    at: float
    observer: str
    type: int
    members: tuple[str, ...]
    user_name: str


class EventWatcher:
    """WatchEvents on one agent in a thread; records every event with a timestamp."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.events: list[SeenEvent] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._call: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"watch-events-{agent.name}", daemon=True
        )

    def start(self) -> EventWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._call = self.agent.membership().WatchEvents(membership_pb2.WatchEventsRequest())
            self._ready.set()
            for response in self._call:
                event = response.event
                seen = SeenEvent(
                    at=time.monotonic(),
                    observer=self.agent.name,
                    type=event.type,
                    members=tuple(m.name for m in event.members),
                    user_name=event.user.name,
                )
                with self._lock:
                    self.events.append(seen)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.error = error
        finally:
            self._ready.set()

    def snapshot(self) -> list[SeenEvent]:
        with self._lock:
            return list(self.events)

    def stop(self) -> None:
        self._ready.wait(timeout=5)
        if self._call is not None:
            self._call.cancel()
        self._thread.join(timeout=5)


def watchers(agents: Iterable[Agent]) -> Iterator[EventWatcher]:
    for agent in agents:
        yield EventWatcher(agent).start()
