"""The client's pool fed by heartbeat responses: an unchanged list is not converted
again, and any change to it reaches the pool."""

from __future__ import annotations

from controlplane.client.common import ClientOptions, Failover
from controlplane.v1 import server_pool_pb2 as pb


def response(*addresses: str) -> pb.HeartbeatResponse:
    return pb.HeartbeatResponse(
        servers=[
            pb.Server(name=f"s{i}", address=address, api_version=pb.ApiVersion(major=1))
            for i, address in enumerate(addresses)
        ],
        num_nodes=len(addresses),
    )


def test_an_unchanged_list_reuses_its_servers_and_a_changed_one_is_converted() -> None:
    failover = Failover(["127.0.0.1:1"], ClientOptions(heartbeat=False, seed=3))
    failover.refresh(response("127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"))
    first = {s.name: s for s in failover.servers()}
    assert {s.address for s in first.values()} == {"127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"}

    # An equal list in a new message: the very same Server objects stay in the pool.
    failover.refresh(response("127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"))
    assert all(first[s.name] is s for s in failover.servers())

    # One address changed: the pool holds the new one.
    failover.refresh(response("127.0.0.1:1", "127.0.0.9:1", "127.0.0.3:1"))
    assert {s.name: s.address for s in failover.servers()} == {
        "s0": "127.0.0.1:1",
        "s1": "127.0.0.9:1",
        "s2": "127.0.0.3:1",
    }
    # A server gone from the list is gone from the pool.
    failover.refresh(response("127.0.0.1:1", "127.0.0.9:1"))
    assert sorted(s.name for s in failover.servers()) == ["s0", "s1"]
