"""plan_rebalance / commit_rebalance: rebalancing with the pings done elsewhere."""

from __future__ import annotations

import pytest

from controlplane.pool import InvalidCountError

from .helpers import NO_EJECTION, make_pool, make_server


def test_two_phase_gives_the_same_result_as_rebalance() -> None:
    one, two = make_pool(seed=7, ejection=NO_EJECTION), make_pool(seed=7, ejection=NO_EJECTION)
    servers = [make_server(i) for i in range(10)]
    for pool in (one, two):
        pool.refresh_server_lists(servers, num_nodes=10, leader_address=None, now=0.0)
    alive = {"s03", "s07"}
    direct = one.rebalance(lambda server: server.name in alive, 1.0)
    plan = two.plan_rebalance(1.0)
    answers: list[bool] = []
    for server in plan.ping_order:
        answers.append(server.name in alive)
        if answers[-1]:
            break
    staged = two.commit_rebalance(plan, answers, 1.0)
    assert staged == direct
    assert two.servers() == one.servers()


def test_nothing_changes_until_commit() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    pool.refresh_server_lists(
        [make_server(i) for i in range(5)], num_nodes=5, leader_address=None, now=0.0
    )
    before = pool.servers()
    plan = pool.plan_rebalance(1.0)
    assert pool.servers() == before
    assert sorted(s.name for s in plan.ping_order) == sorted(s.name for s in before)


def test_no_answer_marks_the_pool_offline_and_keeps_the_order() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    pool.refresh_server_lists(
        [make_server(i) for i in range(4)], num_nodes=4, leader_address=None, now=0.0
    )
    before = pool.servers()
    plan = pool.plan_rebalance(1.0)
    result = pool.commit_rebalance(plan, [False] * len(plan.ping_order), 1.0)
    assert result.offline
    assert pool.is_offline
    assert pool.servers() == before


def test_servers_added_or_removed_while_pinging_are_respected() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    pool.refresh_server_lists(
        [make_server(i) for i in range(4)], num_nodes=4, leader_address=None, now=0.0
    )
    plan = pool.plan_rebalance(1.0)
    head = plan.ping_order[0]
    # While the pings are in flight a heartbeat replaces one server with a new one.
    removed = next(s for s in pool.servers() if s.name != head.name)
    survivors = [s for s in pool.servers() if s.name != removed.name]
    pool.refresh_server_lists(
        [*survivors, make_server(9)], num_nodes=4, leader_address=None, now=1.5
    )
    result = pool.commit_rebalance(plan, [True], 2.0)
    assert result.head == head
    names = [s.name for s in pool.servers()]
    assert names[0] == head.name
    assert removed.name not in names
    assert "s09" in names
    assert len(names) == len(set(names)) == 4


def test_more_answers_than_pings_is_refused() -> None:
    pool = make_pool(ejection=NO_EJECTION)
    pool.refresh_server_lists([make_server(0)], num_nodes=1, leader_address=None, now=0.0)
    plan = pool.plan_rebalance(1.0)
    with pytest.raises(InvalidCountError, match="answers"):
        pool.commit_rebalance(plan, [False, True], 1.0)
