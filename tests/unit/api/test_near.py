"""`near` on Heartbeat, FindServer and ListServers (Consul's ?near=): servers nearest
first by the distances the membership layer estimates, unknown ones after them, the
per-client shuffle kept among equal distances, and a bad `near` refused."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any, cast

import pytest

from controlplane.api.heartbeat import HeartbeatRpcs
from controlplane.api.server_pool import PoolRegistry, ServerPoolRpcs
from controlplane.errors import InvalidArgument
from controlplane.heartbeat.tracker import HeartbeatTracker
from controlplane.v1 import server_pool_pb2 as pb
from tests.property.api.test_server_list_cache import Context, FakeLayer

# Round trips from "client-host" to each server; s5 has no known coordinate.
DISTANCES = {"s0": 0.040, "s1": 0.002, "s2": 0.040, "s3": 0.002, "s4": 0.002}


# Round trips from "other-host", set by a test.
OTHER: dict[str, float] = {}


def distances(near: str, names: Iterable[str]) -> Mapping[str, float]:
    table = {"client-host": DISTANCES, "other-host": OTHER}.get(near, {})
    return {n: table[n] for n in names if n in table}


def heartbeat(rpcs: HeartbeatRpcs, client: str, near: str = "") -> list[str]:
    request = pb.HeartbeatRequest(
        client_id=client, api_version=pb.ApiVersion(major=1, minor=0), near=near
    )
    return [s.name for s in rpcs.Heartbeat(request, cast(Any, Context())).servers]


def heartbeat_rpcs(tracker: HeartbeatTracker | None = None) -> HeartbeatRpcs:
    layer = FakeLayer()
    for index in range(6):
        layer.set(f"s{index}", tags={"role": "server", "api_version": "1.0"})
    return HeartbeatRpcs(
        cast(Any, layer),
        tracker if tracker is not None else HeartbeatTracker(random.Random(0)),
        lambda: 5.0,
        lambda: None,
        distances=distances,
    )


def test_heartbeat_near_orders_by_distance_and_keeps_the_shuffle_within_groups() -> None:
    rpcs = heartbeat_rpcs()
    for client in ("a", "b", "c", "d"):
        plain = heartbeat(rpcs, client)
        near = heartbeat(rpcs, client, "client-host")
        # Nearest group first, then the far group, then the unknown; inside each group
        # the client's own shuffled order.
        expected = [
            *[n for n in plain if DISTANCES.get(n) == 0.002],
            *[n for n in plain if DISTANCES.get(n) == 0.040],
            *[n for n in plain if n not in DISTANCES],
        ]
        assert "s5" in near[-2:]
        assert near == expected, client
    # Near a member without a known coordinate: the plain order (Consul's rule).
    assert heartbeat(rpcs, "a", "elsewhere") == heartbeat(rpcs, "a")


@pytest.mark.parametrize("near", ["bad name", "x" * 200, "_agent!"])
def test_a_bad_near_is_invalid_argument(near: str) -> None:
    tracker = HeartbeatTracker(random.Random(0))
    rpcs = heartbeat_rpcs(tracker)
    with pytest.raises(InvalidArgument, match="near"):
        heartbeat(rpcs, "a", near)
    # Refused before the client is recorded: a refused heartbeat leaves no client behind.
    assert list(tracker.client_ids(5.0)) == []


class _Clock:
    def __call__(self) -> float:
        return 1.0


async def test_find_and_list_servers_near() -> None:
    rpcs = ServerPoolRpcs(PoolRegistry(_Clock(), rng=random.Random(1)), distances)
    context = cast(Any, None)
    servers = [pb.Server(name=f"s{i}", address=f"10.0.0.{i + 1}:7946") for i in range(6)]
    await rpcs.RefreshServerLists(pb.RefreshServerListsRequest(pool="db", servers=servers), context)
    plain = await rpcs.ListServers(pb.ListServersRequest(pool="db"), context)
    near = await rpcs.ListServers(pb.ListServersRequest(pool="db", near="client-host"), context)
    order = [s.name for s in near.primaries]
    assert set(order[:3]) == {"s1", "s3", "s4"}
    assert set(order[3:5]) == {"s0", "s2"}
    assert order[5] == "s5"
    found = await rpcs.FindServer(pb.FindServerRequest(pool="db", near="client-host"), context)
    assert found.server.name == order[0]
    head = await rpcs.FindServer(pb.FindServerRequest(pool="db"), context)
    assert head.server.name == plain.primaries[0].name
    # The pool's last server is the nearest one: found, though the head is another.
    OTHER.update({plain.primaries[-1].name: 0.001, plain.primaries[0].name: 0.002})
    found = await rpcs.FindServer(pb.FindServerRequest(pool="db", near="other-host"), context)
    assert found.server.name == plain.primaries[-1].name
    with pytest.raises(InvalidArgument, match="near"):
        await rpcs.FindServer(pb.FindServerRequest(pool="db", near="no way"), context)
