"""Views under an adversarial network: no member names a leader past its lease.

Two members with drifting clocks exchange election messages through a network
that delivers any message in flight at any later time, any number of times, or
never; one member may be killed and restarted (a new process run) or paused for
longer than a lease. Whatever the schedule, a member reports another as leader
only while that leadership's lease (as its holder computes it) has not ended, and
the epochs a member reports never go down within one process run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.election import Broadcast, Effect, Election, ElectionConfig, MemberView, Send

CFG = ElectionConfig()
DRIFT = CFG.max_drift


@dataclass
class Node:
    name: str
    rank: int | None
    rate: float
    offset: float
    election: Election
    life: int = 1
    paused_until: float = 0.0
    reported: int = 0
    sent: list[tuple[str, bytes]] = field(default_factory=list)

    def local(self, t: float) -> float:
        return self.offset + self.rate * t


advance = st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=12.0))
# Deliver everything in flight but the oldest ``n`` messages, which stay for later.
flush = st.tuples(st.just("flush"), st.integers(min_value=0, max_value=3))
actions = st.lists(
    st.one_of(
        advance,
        advance,
        flush,
        flush,
        flush,
        st.tuples(st.just("deliver"), st.integers(min_value=0, max_value=63), st.booleans()),
        st.tuples(st.just("drop"), st.integers(min_value=0, max_value=63)),
        st.tuples(st.just("restart"), st.sampled_from(["a", "b"])),
        st.tuples(st.just("pause"), st.sampled_from(["a", "b"]), st.floats(2.0, 30.0)),
        st.tuples(st.just("pause"), st.just("a"), st.floats(2.0, 30.0)),
    ),
    min_size=5,
    max_size=150,
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    actions,
    st.sampled_from([1.0 - DRIFT, 1.0, 1.0 + DRIFT]),
    st.sampled_from([1.0 - DRIFT, 1.0, 1.0 + DRIFT]),
    st.sampled_from([2, None]),
)
def test_no_view_outlives_the_lease_and_reported_epochs_only_grow(
    steps: list[tuple[object, ...]], rate_a: float, rate_b: float, rank_b: int | None
) -> None:
    t = 0.0
    nodes = {
        "a": Node("a", 1, rate_a, 500.0, Election(CFG, "a", rank=1, now=500.0)),
        "b": Node("b", rank_b, rate_b, 9000.0, Election(CFG, "b", rank=rank_b, now=9000.0)),
    }
    in_flight: list[tuple[str, bytes]] = []
    lease_ends: dict[tuple[str, int], float] = {}

    def apply(node: Node, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                in_flight.append((effect.to, effect.data))
            elif isinstance(effect, Broadcast):
                other = "b" if node.name == "a" else "a"
                in_flight.append((other, effect.data))

    def check() -> None:
        for node in nodes.values():
            view = node.election.leader(node.local(t))
            if view is not None and view.is_self:
                lease_ends[(node.name, view.epoch)] = t + view.lease_remaining / node.rate
        for node in nodes.values():
            if t < node.paused_until:
                continue
            view = node.election.leader(node.local(t))
            if view is None:
                continue
            assert view.epoch >= node.reported, (node.name, view, node.reported)
            node.reported = view.epoch
            if view.is_self:
                continue
            end = lease_ends.get((view.name, view.epoch))
            assert end is not None, (node.name, view)
            assert t <= end + 1e-9, (node.name, view, t, end)

    for node in nodes.values():
        other = "b" if node.name == "a" else "a"
        view = {other: MemberView(nodes[other].rank, True)}
        apply(node, node.election.update_members(view, node.local(t)))
    check()
    for step in steps:
        kind = step[0]
        if kind == "advance":
            assert isinstance(step[1], float)
            end = t + step[1]
            while t < end:
                t = min(end, t + 0.5)
                for node in nodes.values():
                    if t >= node.paused_until:
                        apply(node, node.election.tick(node.local(t)))
                check()
        elif kind == "flush":
            assert isinstance(step[1], int)
            kept, due = in_flight[: step[1]], in_flight[step[1] :]
            in_flight[:] = kept
            for to, data in due:
                node = nodes[to]
                if t >= node.paused_until:
                    apply(node, node.election.receive(data, node.local(t)))
        elif kind in ("deliver", "drop") and in_flight:
            assert isinstance(step[1], int)
            index = step[1] % len(in_flight)
            to, data = in_flight[index]
            keep = kind == "deliver" and bool(step[2])
            if not keep:
                del in_flight[index]
            node = nodes[to]
            if kind == "deliver" and t >= node.paused_until:
                apply(node, node.election.receive(data, node.local(t)))
        elif kind == "restart":
            node = nodes[str(step[1])]
            node.life += 1
            node.reported = 0
            # A new process may read another clock (a reboot): old stamps mean nothing.
            node.offset -= 1000.0
            node.election = Election(
                CFG,
                node.name,
                rank=node.rank,
                now=node.local(t),
                epoch=node.election.epoch,
                life=node.life,
            )
            other = "b" if node.name == "a" else "a"
            view = {other: MemberView(nodes[other].rank, True)}
            apply(node, node.election.update_members(view, node.local(t)))
        elif kind == "pause":
            node = nodes[str(step[1])]
            assert isinstance(step[2], float)
            node.paused_until = max(node.paused_until, t + step[2])
        check()
