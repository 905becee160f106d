"""A heartbeat that repeats the list already installed takes a short path through
`refresh_server_lists`; it must leave the pool exactly as the general path would.

Two pools with the same seed go through the same random operations. One is the
pool itself and receives the very `Server` objects it was given before whenever a
list repeats (as the client does, which converts a heartbeat's list only when it
changed), so it takes the short path; the other never takes it and receives equal
copies. Every observable must agree after every step.
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Sequence

import pytest

from controlplane.pool import ApiVersion, Server, ServerPool

from .helpers import make_pool, make_server

NAMES = 7


def _details(rng: random.Random, index: int) -> Server:
    """Server `index` with details that vary a little from step to step."""
    choice = rng.random()
    if choice < 0.1:
        return make_server(index, api_version=ApiVersion(2, 0))  # incompatible
    if choice < 0.2:
        return make_server(index, draining=True)
    return make_server(index, api_version=ApiVersion(1, 0))


class GeneralPathPool(ServerPool):
    """A pool that never takes the short path."""

    def _is_repeat(self, servers: Sequence[Server]) -> bool:
        return False


def _answer(answers: dict[str, bool], server: Server) -> bool:
    return answers[server.name]


def _observe(pool: ServerPool, now: float) -> tuple[object, ...]:
    names = [make_server(i).name for i in range(NAMES)]
    return (
        pool.servers(),
        pool.primary_servers(),
        pool.backup_servers(),
        pool.candidates(now),
        pool.is_offline,
        pool.num_nodes,
        pool.leader_address,
        pool.last_refreshed_at,
        pool.ejected_servers(now),
        tuple(pool.consecutive_failures(name) for name in names),
        pool.next_rebalance_interval(),
    )


def _run(seed: int, steps: int) -> int:
    """Returns how many refreshes were repeats (so the test knows it exercised them)."""
    rng = random.Random(seed)
    short = make_pool(seed=seed)
    general = GeneralPathPool(short.config, rng=random.Random(seed))
    last: list[Server] = []
    repeats = 0
    now = 100.0

    def both(method: str, *args: object) -> None:
        assert getattr(short, method)(*args) == getattr(general, method)(*args)

    for _ in range(steps):
        now += rng.uniform(0.0, 5.0)
        kind = rng.random()
        if kind < 0.45 and last:
            # The same list again, in the order of a new response.
            listed = rng.sample(last, len(last))
            repeats += 1
            leader = rng.choice(["", "10.0.0.1:7946", "10.0.0.2:7946"])
            nodes = rng.randrange(10)
            copies = [copy.copy(s) for s in listed]
            assert short.refresh_server_lists(listed, nodes, leader, now) == (
                general.refresh_server_lists(copies, nodes, leader, now)
            )
        elif kind < 0.6:
            if rng.random() < 0.5:
                # The same servers with new details (or the same details, new objects).
                indexes = [int(s.name[1:]) for s in short.primary_servers()]
            else:
                indexes = rng.sample(range(NAMES), rng.randrange(NAMES + 1))
            count = len(indexes)
            last = [_details(rng, i) for i in indexes]
            if rng.random() < 0.1 and last:
                last.append(copy.copy(last[0]))  # a repeated name
            copies = [copy.copy(s) for s in last]
            assert short.refresh_server_lists(last, count, "", now) == (
                general.refresh_server_lists(copies, count, "", now)
            )
        elif kind < 0.67:
            server = _details(rng, rng.randrange(NAMES))
            both("add_server", copy.copy(server))
        elif kind < 0.72:
            name = make_server(rng.randrange(NAMES)).name
            both("remove_server", name)
        elif kind < 0.79:
            name, draining = make_server(rng.randrange(NAMES)).name, rng.random() < 0.5
            both("set_draining", name, draining)
        elif kind < 0.84:
            backups = [_details(rng, i) for i in rng.sample(range(NAMES), rng.randrange(3))]
            both("set_backup_servers", [copy.copy(s) for s in backups])
        elif kind < 0.93:
            server = make_server(rng.randrange(NAMES))
            failed = rng.random() < 0.7
            if failed:
                both("notify_failed_server", server, now)
            else:
                both("notify_success", server, now)
        else:
            answers = {make_server(i).name: rng.random() < 0.6 for i in range(NAMES)}
            both("rebalance", functools.partial(_answer, answers), now)
        assert _observe(short, now) == _observe(general, now)
        # find_server scans for the head instead of ranking: the same answer.
        assert short.find_server(now) == next(iter(short.candidates(now)), None)
    return repeats


@pytest.mark.parametrize("seed", range(20))
def test_a_repeated_list_leaves_the_pool_as_the_general_path_would(seed: int) -> None:
    assert _run(seed, steps=300) > 50


def test_a_repeated_list_keeps_the_order_a_rebalance_chose() -> None:
    pool = make_pool(seed=3)
    servers = [make_server(i) for i in range(5)]
    pool.refresh_server_lists(servers, 5, "", 1.0)
    pool.rebalance(lambda s: s.name == "s03", 2.0)
    chosen = pool.primary_servers()
    assert chosen[0].name == "s03"
    result = pool.refresh_server_lists(list(reversed(servers)), 6, "10.0.0.9:7946", 3.0)
    assert (result.added, result.removed, result.incompatible) == ((), (), ())
    assert pool.primary_servers() == chosen
    assert (pool.num_nodes, pool.leader_address, pool.last_refreshed_at) == (
        6,
        "10.0.0.9:7946",
        3.0,
    )


def test_a_repeated_list_still_checks_a_new_leader_address() -> None:
    pool = make_pool()
    servers = [make_server(i) for i in range(3)]
    pool.refresh_server_lists(servers, 3, "", 1.0)
    with pytest.raises(ValueError, match="leader_address"):
        pool.refresh_server_lists(servers, 3, "no port", 2.0)
