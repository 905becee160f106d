"""Per-ring settings on real agents: a ring configured as Ringman's places keys as
Go's serialx/hashring does, live, and a ring without settings keeps the defaults.

Two agents join each other; one reads the ring settings from a TOML file, the other
from `--ring` flags. Both are members of the rings `ringman` and `plain` (Ringman's
way: tags `ring` and `service_port`, ids `address:service_port`), and three nodes
are registered through AddNode. Each agent's GetNode answers for a few hundred keys
are compared with tests/interop/node/serialx_ring.js, the reference written from
serialx/hashring's algorithm, run under Node.js for the same nodes and keys, and so
are the Python client's local answers (its live ring, built from WatchRing
snapshots and the settings they carry). Without
`node` the test skips, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.client import Client, ClientOptions
from controlplane.client.ringview import RingState, settings_to_proto
from controlplane.ring import HashRing, LookupRule, RingSettings
from controlplane.testing.agents import (
    AgentProcess,
    free_port,
    start_agent,
    wait_until,
    with_credentials,
)
from controlplane.v1 import ring_pb2 as pb
from controlplane.v1 import ring_pb2_grpc
from tests.ci import in_ci

pytestmark = [pytest.mark.integration]

HOSTS = ["127.0.0.1", "127.0.0.2"]
SERVICE_PORT = 8080
REGISTERED = [("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.3", 1)]
RINGMAN = RingSettings(vnodes=40, points_per_vnode=3, lookup=LookupRule.AFTER)
REFERENCE = Path(__file__).resolve().parents[1] / "interop" / "node" / "serialx_ring.js"
# Ordinary keys, then keys that land exactly on a ring point ("<id>-<j>" hashes like
# virtual node j of <id>): there the lookup rule decides the owner.
KEYS = [f"user:{i}" for i in range(300)] + [f"127.0.0.1:{SERVICE_PORT}-{j}" for j in range(30)]


def reference_owners(nodes: list[tuple[str, int]], keys: list[str]) -> list[str]:
    if shutil.which("node") is None:
        if in_ci():
            pytest.fail("CI=true but `node` is not on PATH for the serialx reference")
        pytest.skip("the serialx reference needs `node` on PATH")
    spec = {"cases": [{"name": "live", "nodes": [list(node) for node in nodes], "keys": keys}]}
    completed = subprocess.run(
        ["node", str(REFERENCE)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    owners: list[str] = json.loads(completed.stdout)["cases"][0]["owners"]
    return owners


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    port = free_port(*HOSTS)
    config = tmp_path / "agent.toml"
    config.write_text('[rings.ringman]\nvnodes = 40\npoints_per_vnode = 3\nlookup = "after"\n')
    tags = ["--tag", "ring=ringman,plain", "--tag", f"service_port={SERVICE_PORT}"]
    common = ["--profile", "local", "--drain-period", "0", *tags]
    started: list[AgentProcess] = []
    try:
        started.append(
            start_agent(
                "serialx-1",
                host=HOSTS[0],
                port=port,
                args=[*common, "--config", str(config)],
                log_dir=tmp_path,
            )
        )
        started.append(
            start_agent(
                "serialx-2",
                host=HOSTS[1],
                port=port,
                args=[
                    *common,
                    "--ring",
                    "ringman.points_per_vnode=3",
                    "--ring",
                    "ringman.lookup=after",
                    "--join",
                    f"{HOSTS[0]}:{port}",
                ],
                log_dir=tmp_path,
            )
        )
        yield started
    finally:
        for agent in started:
            agent.kill()


def snapshot(agent: AgentProcess, ring: str) -> pb.RingSnapshot:
    try:
        stub = ring_pb2_grpc.RingStub(agent.channel())
        return stub.GetRing(pb.GetRingRequest(ring=ring), timeout=5).ring
    except grpc.RpcError:
        return pb.RingSnapshot()


def owners(agent: AgentProcess, ring: str) -> list[str]:
    with agent.channel() as channel:
        get_node = ring_pb2_grpc.RingStub(channel).GetNode
        futures = [
            get_node.future(pb.GetNodeRequest(ring=ring, key=key), timeout=30) for key in KEYS
        ]
        return [future.result().node.id for future in futures]


def test_a_ring_with_ringmans_settings_places_keys_as_serialx(agents: list[AgentProcess]) -> None:
    stub = ring_pb2_grpc.RingStub(agents[0].channel())
    for ring in ("ringman", "plain"):
        for address, weight in REGISTERED:
            stub.AddNode(
                pb.AddNodeRequest(ring=ring, address=address, port=SERVICE_PORT, weight=weight),
                timeout=5,
            )
    weights = {f"{host}:{SERVICE_PORT}": 1 for host in HOSTS}
    weights.update({f"{address}:{SERVICE_PORT}": weight for address, weight in REGISTERED})

    def settled() -> bool:
        views = [snapshot(agent, ring) for agent in agents for ring in ("ringman", "plain")]
        return all({node.id for node in view.nodes} == set(weights) for view in views)

    assert wait_until(settled, timeout=30), [snapshot(a, "ringman") for a in agents]

    # Ringman joins members in the order it learns them: serialx's answers would
    # differ with the order only on a shared point, and these ids share none.
    expected = reference_owners(list(weights.items()), KEYS)
    plain_expected = [HashRing(weights).get_node(key) for key in KEYS]
    for agent in agents:
        ringman = snapshot(agent, "ringman")
        plain = snapshot(agent, "plain")
        assert ringman.settings == settings_to_proto(RINGMAN)
        assert plain.settings == settings_to_proto(RingSettings())
        assert ringman.checksum == HashRing(weights, settings=RINGMAN).checksum
        assert plain.checksum == HashRing(weights).checksum
        # Clients rebuild each ring from its snapshot, settings included.
        assert RingState.of(ringman).checksum_matches
        assert RingState.of(plain).checksum_matches

        assert owners(agent, "ringman") == expected
        assert owners(agent, "plain") == plain_expected
    # The Python client's live ring (WatchRing snapshots) answers locally alike.
    options = with_credentials(ClientOptions(heartbeat=False, timeout=10))
    with Client([agents[1].target], options) as client:
        live = client.ring("ringman", timeout=10)
        assert live.state.checksum_matches
        assert [live.get_node(key) for key in KEYS] == expected
        live.close()
    # Ketama's 4 points per vnode place keys elsewhere: the settings are what agree.
    assert sum(a != b for a, b in zip(plain_expected, expected, strict=True)) > len(KEYS) // 10
