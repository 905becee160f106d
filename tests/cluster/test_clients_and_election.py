"""A thin client through a rolling restart, and leader election across a pause."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

import grpc

from controlplane.client import Client, ClientOptions
from controlplane.errors import ControlPlaneError
from tests.cluster.conftest import ClusterFactory
from tests.cluster.harness import (
    DISSEMINATION,
    ELECTION,
    LEFT,
    Agent,
    detection_bound,
    wait_until,
)

# --------------------------------------------------------------------------
# Rolling restart under load
# --------------------------------------------------------------------------

DRAIN_PERIOD = 3.0
SHUTDOWN_GRACE = 2.0
HEARTBEAT = 0.25
# From the SIGTERM to the client no longer sending calls to the draining agent:
# the agent tags itself `draining` at once and the tag reaches every other agent
# within DISSEMINATION; the client's next heartbeat (at most HEARTBEAT later,
# whichever agent answers it) then lists the servers without it, and the pool
# drops it at once. 0.5 s covers the Docker API call that delivers the signal,
# the RPCs themselves and scheduling on a loaded machine. It is below the drain
# period, so the agent is still serving when the client has already left it.
DRAIN_MARGIN = HEARTBEAT + DISSEMINATION + 0.5
# `docker stop` waits this long before SIGKILL: drain + leave (at most Serf's
# broadcast timeout, 5 s) + in-flight grace, with room to spare.
STOP_TIMEOUT = int(DRAIN_PERIOD + 5 + SHUTDOWN_GRACE + 10)


@dataclass(frozen=True)
class Call:
    started: float
    answered: float
    method: str
    server: str | None  # the agent that answered, by node name
    error: str | None


def test_rolling_restart_under_client_load(make_cluster: ClusterFactory) -> None:
    assert DRAIN_MARGIN < DRAIN_PERIOD
    cluster = make_cluster(
        3,
        lambda _i, _name: (
            "--drain-period",
            str(DRAIN_PERIOD),
            "--shutdown-grace",
            str(SHUTDOWN_GRACE),
        ),
    )
    by_address = {a.address: a.name for a in cluster.agents}
    calls: list[Call] = []
    stop = threading.Event()

    client = Client(
        [a.address for a in cluster.agents],
        ClientOptions(timeout=5.0, heartbeat_interval_override=HEARTBEAT),
    )

    def load() -> None:
        i = 0
        while not stop.is_set():
            method = ("local_member", "members", "leader")[i % 3]
            i += 1
            started = time.monotonic()
            server: str | None = None
            error: str | None = None
            try:
                if method == "local_member":
                    # GetLocalMember answers with the answering agent itself.
                    server = client.local_member().name
                elif method == "members":
                    client.members()
                else:
                    client.leader()
            except ControlPlaneError as exc:
                error = f"{type(exc).__name__}: {exc}"
            answered = time.monotonic()
            if server is None and error is None:
                current = client.current_server
                server = by_address.get(current or "", current)
            calls.append(Call(started, answered, method, server, error))
            time.sleep(0.02)

    worker = threading.Thread(target=load, name="client-load", daemon=True)
    drains: dict[str, tuple[float, float]] = {}  # name: (SIGTERM sent, started again)
    try:
        wait_until(
            lambda: {s.name for s in client.servers()} == set(cluster.names),
            10.0,
            "the client's pool lists all three agents",
            describe=client.servers,
        )
        worker.start()
        time.sleep(2.0)
        pending = list(cluster.agents)
        while pending:
            # Restart the agent the client is using, when it is still pending, so
            # that the drain is seen under load (and not on an idle agent).
            answering = next(
                (c.server for c in reversed(calls) if c.method == "local_member"), None
            )
            agent = next((a for a in pending if a.name == answering), pending[0])
            pending.remove(agent)
            others = [a for a in cluster.agents if a is not agent]
            sigterm = time.monotonic()
            code = cluster.stop(agent, timeout=STOP_TIMEOUT)
            stopped = time.monotonic()
            assert code == 0, f"{agent.name} exited {code} on SIGTERM"
            assert stopped - sigterm >= DRAIN_PERIOD, "the agent stopped before its drain period"
            cluster.wait_status(others, [agent], [LEFT], 5.0, f"{agent.name} LEFT (not FAILED)")
            restarted = time.monotonic()
            cluster.restart(agent)
            drains[agent.name] = (sigterm, restarted)
            cluster.wait_converged(cluster.agents, 30.0)
            wait_until(
                lambda: {s.name for s in client.servers()} == set(cluster.names),
                10.0,
                f"the client's pool lists {agent.name} again",
                describe=client.servers,
            )
            print(
                f"{agent.name}: stopped {stopped - sigterm:.1f} s after SIGTERM, "
                f"back in the pool {time.monotonic() - restarted:.1f} s after docker start"
            )
            time.sleep(1.0)
    finally:
        stop.set()
        worker.join(timeout=10)
        client.close()

    failed = [c for c in calls if c.error is not None]
    assert not failed, f"{len(failed)} of {len(calls)} calls failed: {failed[:5]}"
    assert len(calls) > 100, f"only {len(calls)} calls were made"

    # Only GetLocalMember names the answering agent for certain (the client's
    # `current_server` is shared with its heartbeat thread).
    for name, (sigterm, restarted) in drains.items():
        late = [
            c
            for c in calls
            if c.method == "local_member"
            and c.server == name
            and sigterm + DRAIN_MARGIN < c.answered < restarted
        ]
        assert not late, (
            f"{name} answered {len(late)} calls more than {DRAIN_MARGIN:.2f} s after its "
            f"drain began: {late[:3]}"
        )
        last = max(
            (
                c.answered - sigterm
                for c in calls
                if c.server == name and sigterm <= c.answered < restarted
            ),
            default=None,
        )
        print(
            f"{name}: last call answered {last if last is None else round(last, 2)} s after SIGTERM"
        )
    # The drain was exercised: the agent was serving the client when SIGTERM came.
    under_load = [
        name
        for name, (sigterm, _) in drains.items()
        if any(c.server == name and sigterm - 1.0 <= c.answered <= sigterm for c in calls)
    ]
    assert len(under_load) >= 2, f"only {under_load} were serving the client when stopped"
    answered_by = {c.server for c in calls if c.method == "local_member"}
    print(
        f"{len(calls)} calls, none failed; GetLocalMember answered by {answered_by}; "
        f"stopped while serving the client: {under_load}"
    )


# --------------------------------------------------------------------------
# Election across a pause of the leader
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sighting:
    at: float
    observer: str
    leader: str | None
    epoch: int
    lease_remaining: float


class LeaderObserver:
    """Polls GetLeader on every agent (except a paused one) into one timeline."""

    def __init__(self, agents: list[Agent], period: float = 0.2) -> None:
        self.agents = agents
        self.period = period
        self.sightings: list[Sighting] = []
        self.skip: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-observer", daemon=True)

    def start(self) -> LeaderObserver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for agent in self.agents:
                if agent.name in self.skip:
                    continue
                try:
                    leader = agent.get_leader(timeout=1.0)
                except grpc.RpcError:
                    continue
                sighting = Sighting(
                    at=time.monotonic(),
                    observer=agent.name,
                    leader=leader.name if leader is not None else None,
                    epoch=leader.epoch if leader is not None else 0,
                    lease_remaining=(
                        leader.lease_remaining.ToTimedelta().total_seconds()
                        if leader is not None
                        else 0.0
                    ),
                )
                with self._lock:
                    self.sightings.append(sighting)
            self._stop.wait(self.period)

    def of(self, observer: str) -> list[Sighting]:
        with self._lock:
            return [s for s in self.sightings if s.observer == observer]

    def latest(self) -> dict[str, Sighting]:
        with self._lock:
            result: dict[str, Sighting] = {}
            for s in self.sightings:
                result[s.observer] = s
            return result


def agreed(observer: LeaderObserver, names: list[str], since: float) -> Sighting | None:
    latest = observer.latest()
    views = [latest.get(name) for name in names]
    if any(v is None or v.at < since or v.leader is None for v in views):
        return None
    first = views[0]
    assert first is not None
    if all(v is not None and (v.leader, v.epoch) == (first.leader, first.epoch) for v in views):
        return first
    return None


def test_paused_leader_is_replaced_and_steps_down(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(3)
    names = cluster.names
    lease = ELECTION.lease_time
    skew = ELECTION.max_clock_skew
    beat = ELECTION.beat_interval
    # docs/election.md: failover <= LeaseTime + MaxClockSkew + 2 * BeatDur + detection.
    failover_bound = lease + skew + 2 * beat + detection_bound(len(names))
    # A fresh agent listens for L + S before it claims or grants.
    first_bound = 2 * (lease + skew) + 2 * beat + DISSEMINATION

    observer = LeaderObserver(cluster.agents).start()
    try:
        began = time.monotonic()
        first, took = wait_until(
            lambda: agreed(observer, names, began),
            first_bound,
            "every agent reports the same leader",
            describe=observer.latest,
        )
        print(f"first leader {first.leader} epoch {first.epoch} agreed after {took:.1f} s")
        old = cluster[str(first.leader)]
        others = [a for a in cluster.agents if a is not old]

        observer.skip.add(old.name)
        cluster.pause(old)
        paused_at = time.monotonic()

        def replaced() -> Sighting | None:
            s = agreed(observer, [a.name for a in others], paused_at)
            if s is not None and s.leader != old.name and s.epoch > first.epoch:
                return s
            return None

        successor, took = wait_until(
            replaced,
            failover_bound,
            "the others agree on a new leader with a higher epoch",
            describe=observer.latest,
        )
        print(
            f"new leader {successor.leader} epoch {successor.epoch} {took:.1f} s after pausing "
            f"{old.name} (bound {failover_bound:.2f} s)"
        )
        # Keep the old leader paused past its lease whatever the failover took.
        time.sleep(max(0.0, paused_at + lease + skew - time.monotonic()))
        cluster.unpause(old)
        unpaused_at = time.monotonic()
        observer.skip.discard(old.name)

        # Watch until any lease in force at the unpause has run out and the
        # cluster agrees again (the old leader, preferred by name, may win a new
        # leadership, but only with a new, higher epoch).
        def settled() -> Sighting | None:
            if time.monotonic() <= unpaused_at + lease + skew:
                return None
            return agreed(observer, names, unpaused_at + lease + skew)

        final, took = wait_until(
            settled,
            3 * (lease + skew) + detection_bound(len(names)),
            "every agent agrees on one leader after the unpause",
            describe=observer.latest,
        )
        print(
            f"after the unpause: leader {final.leader} epoch {final.epoch}, "
            f"agreed after {took:.1f} s"
        )
    finally:
        observer.stop()

    assert final.epoch >= successor.epoch > first.epoch
    # The check below means something only if the old leader was asked after the
    # unpause, while its stale lease could still have been believed.
    answered = [s for s in observer.of(old.name) if s.at >= unpaused_at]
    assert answered, f"{old.name} answered no GetLeader after the unpause: nothing was checked"
    assert any(s.at <= unpaused_at + lease + skew for s in answered), (
        f"{old.name} was first asked only after its old lease had run out"
    )
    stale = [
        s
        for s in observer.of(old.name)
        if s.at >= unpaused_at
        and s.leader == old.name
        and s.epoch <= first.epoch
        and s.lease_remaining > 0
    ]
    assert not stale, f"{old.name} reported itself leader with the stale epoch: {stale[:3]}"
    for name in names:
        epochs = [s.epoch for s in observer.of(name) if s.leader is not None]
        assert epochs, f"{name} never reported a leader"
        drops = [(a, b) for a, b in itertools.pairwise(epochs) if b < a]
        assert not drops, f"{name} saw the epoch go down: {drops[:3]}"
    print(f"{old.name} answered {len(answered)} GetLeader calls after the unpause, none stale")
