"""Hypothesis properties of the pool under arbitrary sequences of operations."""

from __future__ import annotations

import itertools
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controlplane.pool import ApiVersion, EjectionPolicy, PoolConfig, Server, ServerPool

UNIVERSE = [
    Server(
        name=f"s{i}",
        address=f"10.0.0.{i + 1}:7946",
        api_version=ApiVersion(1, i % 3) if i % 4 else None,
        draining=i % 5 == 4,
    )
    for i in range(12)
]
server_strategy = st.sampled_from(UNIVERSE)
policies = st.builds(
    EjectionPolicy,
    consecutive_failures=st.one_of(st.none(), st.integers(1, 4)),
    base_ejection_time=st.sampled_from([1.0, 5.0, 30.0]),
    max_ejection_time=st.just(300.0),
    max_ejection_percent=st.integers(0, 100),
    always_eject_one=st.booleans(),
)


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pool = ServerPool(
            PoolConfig(client_api_version=ApiVersion(1, 1), seed_addresses=("dns.example:7946",)),
            rng=random.Random(0),
        )
        self.now = 0.0

    @rule(policy=policies, seed=st.integers(0, 2**32 - 1))
    def reconfigure(self, policy: EjectionPolicy, seed: int) -> None:
        if self.pool.num_servers == 0:
            self.pool = ServerPool(
                PoolConfig(
                    client_api_version=ApiVersion(1, 1),
                    ejection=policy,
                    seed_addresses=("dns.example:7946",),
                ),
                rng=random.Random(seed),
            )

    @rule(server=server_strategy)
    def add(self, server: Server) -> None:
        self.pool.add_server(server)

    @rule(server=server_strategy)
    def remove(self, server: Server) -> None:
        self.pool.remove_server(server)

    @rule(servers=st.lists(server_strategy, max_size=8), num_nodes=st.integers(0, 10**6))
    def refresh(self, servers: list[Server], num_nodes: int) -> None:
        self.pool.refresh_server_lists(servers, num_nodes, None, self.now)

    @rule(servers=st.lists(server_strategy, max_size=4))
    def set_backups(self, servers: list[Server]) -> None:
        self.pool.set_backup_servers(servers)

    @precondition(lambda self: self.pool.num_servers > 0)
    @rule(data=st.data(), head=st.booleans())
    def fail(self, data: st.DataObject, head: bool) -> None:
        target = self.pool.find_server(self.now) if head else None
        if target is None:
            target = data.draw(st.sampled_from(self.pool.servers()))
        before = Counter(self.pool.servers())
        self.pool.notify_failed_server(target, self.now)
        assert Counter(self.pool.servers()) == before

    @rule(server=server_strategy)
    def succeed(self, server: Server) -> None:
        self.pool.notify_success(server, self.now)

    @rule(server=server_strategy, draining=st.booleans())
    def drain(self, server: Server, draining: bool) -> None:
        self.pool.set_draining(server, draining)

    @rule(answers=st.lists(st.booleans(), min_size=1, max_size=12))
    def rebalance(self, answers: list[bool]) -> None:
        replies = itertools.cycle(answers)
        before = Counter(s.name for s in self.pool.servers())
        result = self.pool.rebalance(lambda server: next(replies), self.now)
        assert Counter(s.name for s in self.pool.servers()) == before
        if result.head is not None:
            assert self.pool.find_server(self.now) == result.head

    @rule(addresses=st.lists(st.sampled_from([s.address for s in UNIVERSE] + ["10.9.9.9:1"])))
    def rediscover(self, addresses: list[str]) -> None:
        self.pool.rediscover(lambda seed: addresses, self.now)

    @rule(seconds=st.floats(0.0, 400.0))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def head_is_a_member_or_none(self) -> None:
        head = self.pool.find_server(self.now)
        members = self.pool.servers()
        assert head is None or head in members
        if head is not None:
            assert not self.pool.is_ejected(head, self.now)
        assert (head is None) == (self.pool.candidates(self.now) == ())

    @invariant()
    def no_duplicates_and_counts_agree(self) -> None:
        members = self.pool.servers()
        names = [s.name for s in members]
        assert len(names) == len(set(names))
        assert self.pool.num_servers == len(members)
        assert set(self.pool.candidates(self.now)) <= set(members)

    @invariant()
    def no_incompatible_server_is_kept(self) -> None:
        for server in self.pool.servers():
            assert server.api_version is None or server.api_version <= ApiVersion(1, 1)


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 12),
    failures=st.lists(st.tuples(st.integers(0, 14), st.floats(0.0, 100.0)), max_size=60),
    policy=policies,
)
def test_notify_failed_never_loses_or_duplicates_a_server(
    size: int, failures: list[tuple[int, float]], policy: EjectionPolicy
) -> None:
    pool = ServerPool(PoolConfig(ejection=policy), rng=random.Random(size))
    for server in UNIVERSE[:size]:
        pool.add_server(Server(server.name, server.address))
    before = Counter(pool.servers())
    now = 0.0
    for index, step in failures:
        now += step
        # Indices past the pool name servers it does not know; failing them is a no-op.
        target = Server(f"s{index}", f"10.0.0.{index + 1}:7946")
        pool.notify_failed_server(target, now)
        assert Counter(pool.servers()) == before
        head = pool.find_server(now)
        assert head is None or head in before


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 12), now=st.floats(-1e6, 1e6), seed=st.integers(0, 1000))
def test_find_server_is_the_first_candidate(size: int, now: float, seed: int) -> None:
    pool = ServerPool(rng=random.Random(seed))
    pool.refresh_server_lists(
        [Server(s.name, s.address, draining=s.draining) for s in UNIVERSE[:size]], size, None, now
    )
    candidates = pool.candidates(now)
    assert pool.find_server(now) == (candidates[0] if candidates else None)
    assert set(candidates) == set(pool.servers())
