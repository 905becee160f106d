"""The pool takes ping and resolution results as data: plan_rebalance/apply_pings and
seeds_to_resolve/apply_resolution, and the rebalance/rediscover conveniences on top."""

from __future__ import annotations

import pytest

from controlplane.pool import (
    InvalidServerError,
    PoolInputError,
    RebalancePlan,
    SeedFailure,
    Server,
    ServerPool,
)

from .helpers import NO_EJECTION, make_pool, make_server, names

SEED = "servers.example.internal:7946"
OTHER_SEED = "backup-servers.example.internal:7946"


def pool_of(count: int, *, seed: int = 3) -> ServerPool:
    pool = make_pool(seed=seed, ejection=NO_EJECTION)
    pool.refresh_server_lists(
        [make_server(i) for i in range(count)], num_nodes=count, leader_address=None, now=0.0
    )
    return pool


def snapshot(pool: ServerPool, now: float = 1.0) -> tuple[object, ...]:
    return (
        pool.primary_servers(),
        pool.backup_servers(),
        pool.candidates(now),
        pool.is_offline,
        pool.ejected_servers(now),
    )


# ------------------------------------------------------------------ rebalance


def test_the_plan_is_the_order_rebalance_pings_in() -> None:
    planned, pinged = pool_of(6), pool_of(6)
    plan = planned.plan_rebalance(1.0)
    order: list[Server] = []

    def pinger(server: Server) -> bool:
        order.append(server)
        return False

    pinged.rebalance(pinger, 1.0)
    assert plan.ping_order == tuple(order)
    assert len(order) == 6


@pytest.mark.parametrize("alive", [None, 0, 1, 3, 5])
def test_all_results_at_once_give_what_rebalance_gives(alive: int | None) -> None:
    direct, staged = pool_of(6), pool_of(6)
    live = {f"s{alive:02d}"} if alive is not None else set()
    expected = direct.rebalance(lambda server: server.name in live, 1.0)
    plan = staged.plan_rebalance(1.0)
    # Every server pinged concurrently, results in whatever order they came back.
    results = {server: server.name in live for server in reversed(plan.ping_order)}
    assert staged.apply_pings(plan, results, 1.0) == expected
    assert snapshot(staged) == snapshot(direct)


def test_a_failed_ping_sends_the_server_to_the_end() -> None:
    pool = pool_of(4)
    plan = pool.plan_rebalance(1.0)
    first, second = plan.ping_order[0], plan.ping_order[1]
    result = pool.apply_pings(plan, [(second.name, True), (first, False)], 1.0)
    assert result.head == second
    assert result.pinged == (first, second)
    assert result.failed == (first,)
    assert not result.offline
    assert names(pool.primary_servers())[0] == second.name
    assert names(pool.primary_servers())[-1] == first.name


def test_every_server_failing_is_offline_and_keeps_the_order() -> None:
    pool = pool_of(4)
    before = pool.servers()
    plan = pool.plan_rebalance(1.0)
    result = pool.apply_pings(plan, {server.name: False for server in plan.ping_order}, 1.0)
    assert result.head is None
    assert result.offline
    assert pool.is_offline
    assert result.failed == plan.ping_order
    assert pool.servers() == before


def test_results_that_stop_before_an_answer_change_nothing() -> None:
    pool = pool_of(4)
    assert not pool.is_offline
    before = snapshot(pool)
    plan = pool.plan_rebalance(1.0)
    # Two pings failed, then the caller gave up (a timeout): no verdict on the rest.
    partial = [(server, False) for server in plan.ping_order[:2]]
    result = pool.apply_pings(plan, partial, 1.0)
    assert result.head is None
    assert result.pinged == result.failed == plan.ping_order[:2]
    assert result.offline is False
    assert snapshot(pool) == before


def test_a_gap_in_the_results_ends_the_walk() -> None:
    pool = pool_of(4)
    before = snapshot(pool)
    plan = pool.plan_rebalance(1.0)
    # The first server has no result: the answer of the third cannot be used.
    result = pool.apply_pings(plan, {plan.ping_order[2]: True}, 1.0)
    assert result.head is None
    assert result.pinged == ()
    assert snapshot(pool) == before


def test_a_stale_answer_from_a_removed_server_does_not_head_the_pool() -> None:
    pool = pool_of(4)
    plan = pool.plan_rebalance(1.0)
    first, gone = plan.ping_order[0], plan.ping_order[1]
    # While the pings were in flight a heartbeat dropped the server that answered.
    pool.refresh_server_lists([s for s in pool.servers() if s.name != gone.name], 3, None, now=1.5)
    after_heartbeat = snapshot(pool, 2.0)
    result = pool.apply_pings(plan, [(first, False), (gone, True)], 2.0)
    assert result.head is None
    assert gone not in result.pinged
    assert snapshot(pool, 2.0) == after_heartbeat
    assert gone.name not in names(pool.servers())


def test_a_stale_failure_is_dropped_and_the_next_answer_counts() -> None:
    pool = pool_of(4)
    plan = pool.plan_rebalance(1.0)
    gone, head = plan.ping_order[0], plan.ping_order[1]
    pool.remove_server(gone)
    result = pool.apply_pings(plan, {gone: False, head: True}, 2.0)
    assert result.head == head
    assert result.pinged == (head,)
    assert result.failed == ()
    assert names(pool.servers())[0] == head.name
    assert gone.name not in names(pool.servers())


def test_when_every_planned_server_is_gone_nothing_changes() -> None:
    pool = pool_of(2)
    plan = pool.plan_rebalance(1.0)
    pool.refresh_server_lists([make_server(7)], 1, None, now=1.5)
    before = snapshot(pool, 2.0)
    result = pool.apply_pings(plan, dict.fromkeys(plan.ping_order, False), 2.0)
    assert result.head is None
    assert not result.offline
    assert snapshot(pool, 2.0) == before


def test_the_head_is_the_pools_current_record() -> None:
    pool = pool_of(3)
    plan = pool.plan_rebalance(1.0)
    head = plan.ping_order[0]
    pool.set_draining(head)
    result = pool.apply_pings(plan, {head: True}, 2.0)
    assert result.head is not None
    assert result.head.name == head.name
    assert result.head.draining


def test_an_empty_plan_is_offline_as_rebalance_is() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    pool.add_server(make_server(0))
    pool.remove_server("s00")
    direct = make_pool(ejection=NO_EJECTION)
    direct.add_server(make_server(0))
    direct.remove_server("s00")
    assert pool.apply_pings(pool.plan_rebalance(1.0), [], 1.0) == direct.rebalance(
        lambda server: pytest.fail("nothing to ping"), 1.0
    )
    assert pool.is_offline
    assert direct.is_offline


@pytest.mark.parametrize(
    ("results", "needle"),
    [
        ({"s99": True}, "'s99' is not in the plan"),
        ([("s00", False), ("s00", False)], "a second result for 's00'"),
        ({"s00": 1}, "must be True or False"),
        ([("s00",)], "must be a (server, answered) pair"),
        ([(None, True)], "must name a Server or a server name"),
        ("s00", "must be (server, answered) pairs"),
    ],
)
def test_malformed_results_are_refused_and_change_nothing(results: object, needle: str) -> None:
    pool = pool_of(2)
    before = snapshot(pool)
    plan = pool.plan_rebalance(1.0)
    with pytest.raises(InvalidServerError) as raised:
        pool.apply_pings(plan, results, 1.0)  # type: ignore[arg-type]
    assert needle in str(raised.value)
    assert snapshot(pool) == before


def test_the_plan_is_plain_data() -> None:
    plan = pool_of(2).plan_rebalance(1.0)
    assert isinstance(plan, RebalancePlan)
    assert {s.name for s in plan.ping_order} == {"s00", "s01"}


# ---------------------------------------------------------------- rediscovery


def test_seeds_to_resolve_are_every_configured_seed_every_time() -> None:
    pool = make_pool(seed_addresses=(SEED, OTHER_SEED))
    assert pool.seeds_to_resolve(0.0) == (SEED, OTHER_SEED)
    pool.apply_resolution({SEED: ["10.1.0.1:7946"], OTHER_SEED: []}, 0.0)
    assert pool.seeds_to_resolve(1.0) == (SEED, OTHER_SEED)


def test_apply_resolution_gives_what_rediscover_gives() -> None:
    answers = {SEED: ["10.1.0.1:7946", "10.1.0.2:7946"], OTHER_SEED: ["10.1.0.3:7946"]}
    direct = make_pool(seed=5, seed_addresses=(SEED, OTHER_SEED))
    staged = make_pool(seed=5, seed_addresses=(SEED, OTHER_SEED))
    expected = direct.rediscover(lambda seed: answers[seed], 0.0)
    # The mapping's order does not matter; the configured order does.
    result = staged.apply_resolution(dict(reversed(answers.items())), 0.0)
    assert result == expected
    assert result.resolved == ("10.1.0.1:7946", "10.1.0.2:7946", "10.1.0.3:7946")
    assert staged.servers() == direct.servers()


def test_resolution_failures_are_data() -> None:
    third = "third.example.internal:7946"
    pool = make_pool(seed_addresses=(SEED, OTHER_SEED, third))
    result = pool.apply_resolution(
        {SEED: OSError("Name or service not known"), third: ["10.4.0.1:7946", "nope"]},
        0.0,
    )
    assert result.failures == (
        SeedFailure(SEED, "Name or service not known"),
        SeedFailure(OTHER_SEED, f"{OTHER_SEED} did not resolve"),
        SeedFailure(third, result.failures[2].reason),
    )
    assert "address" in result.failures[2].reason
    assert names(list(result.added)) == ["10.4.0.1:7946"]
    assert pool.num_servers == 1
    assert not pool.needs_rediscovery(0.0)


def test_an_error_without_a_message_is_named_by_its_type() -> None:
    pool = make_pool(seed_addresses=(SEED,))
    result = pool.apply_resolution({SEED: ValueError()}, 0.0)
    assert result.failures == (SeedFailure(SEED, "ValueError"),)
    assert pool.num_servers == 0


def test_an_empty_answer_is_not_a_failure() -> None:
    pool = make_pool(seed_addresses=(SEED,))
    result = pool.apply_resolution({SEED: ()}, 0.0)
    assert result.failures == ()
    assert result.added == ()


def test_rediscover_reports_a_missing_answer_as_apply_resolution_does() -> None:
    # A resolver that raises OSError and an answer left out give the same failure.
    direct = make_pool(seed_addresses=(SEED,))
    staged = make_pool(seed_addresses=(SEED,))

    def resolver(seed: str) -> list[str]:
        raise OSError(f"{seed} did not resolve")

    assert direct.rediscover(resolver, 0.0) == staged.apply_resolution({}, 0.0)


@pytest.mark.parametrize(
    ("resolutions", "needle"),
    [
        ({"elsewhere.example:7946": []}, "is not one of the pool's seed_addresses"),
        ({OTHER_SEED: ["10.9.0.1:7946"], SEED: "10.9.0.2:7946"}, "got one string"),
        ({SEED: 7}, "got 7"),
        ([(SEED, [])], "must be a mapping"),
    ],
)
def test_malformed_resolutions_are_refused_and_change_nothing(
    resolutions: object, needle: str
) -> None:
    pool = make_pool(seed_addresses=(OTHER_SEED, SEED))
    with pytest.raises(PoolInputError) as raised:
        pool.apply_resolution(resolutions, 0.0)  # type: ignore[arg-type]
    assert needle in str(raised.value)
    assert pool.num_servers == 0
    assert pool.is_offline


def test_a_resolver_raising_anything_else_propagates_and_changes_nothing() -> None:
    pool = make_pool(seed_addresses=(OTHER_SEED, SEED))

    def resolver(seed: str) -> list[str]:
        if seed == SEED:
            raise RuntimeError("bug in the resolver")
        return ["10.1.0.1:7946"]

    with pytest.raises(RuntimeError):
        pool.rediscover(resolver, 0.0)
    assert pool.num_servers == 0
