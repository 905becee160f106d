"""Key rotation across a real encrypted 3-agent cluster, through the API and the CLI."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.testing.agents import (
    AgentProcess,
    free_port,
    run_cli,
    start_agent,
    wait_until,
)
from controlplane.v1 import keyring_pb2 as pb
from controlplane.v1 import keyring_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
OLD = bytes(range(32))
NEW = bytes(range(100, 132))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    port = free_port(HOSTS[0], *HOSTS[1:])
    encrypt = base64.b64encode(OLD).decode()
    agents: list[AgentProcess] = []
    try:
        for index, host in enumerate(HOSTS, start=1):
            args = [
                "--profile",
                "local",
                "--drain-period",
                "0",
                "--encrypt",
                encrypt,
                "--data-dir",
                str(tmp_path / f"data-{index}"),
            ]
            if index > 1:
                args += ["--join", f"{HOSTS[0]}:{port}"]
            agents.append(
                start_agent(f"k-{index}", host=host, port=port, args=args, log_dir=tmp_path)
            )
        assert wait_until(lambda: all(len(a.members()) == 3 for a in agents), timeout=30)
        yield agents
    finally:
        for agent in agents:
            agent.kill()


def keyring(agent: AgentProcess) -> keyring_pb2_grpc.KeyringStub:
    return keyring_pb2_grpc.KeyringStub(agent.channel())


def test_rotate_the_gossip_key_across_the_cluster(cluster: list[AgentProcess]) -> None:
    first = keyring(cluster[0])
    listed = first.ListKeys(pb.ListKeysRequest(), timeout=30)
    assert (listed.result.num_nodes, listed.result.num_responses) == (3, 3)
    assert [(k.key, k.members, k.primary_members) for k in listed.keys] == [(OLD, 3, 3)]

    installed = first.InstallKey(pb.InstallKeyRequest(key=NEW), timeout=30).result
    assert (installed.num_responses, dict(installed.errors)) == (3, {})
    used = keyring(cluster[1]).UseKey(pb.UseKeyRequest(key=NEW), timeout=30).result
    assert (used.num_responses, dict(used.errors)) == (3, {})
    removed = keyring(cluster[2]).RemoveKey(pb.RemoveKeyRequest(key=OLD), timeout=30).result
    assert (removed.num_responses, dict(removed.errors)) == (3, {})

    listed = first.ListKeys(pb.ListKeysRequest(), timeout=30)
    assert [(k.key, k.members, k.primary_members) for k in listed.keys] == [(NEW, 3, 3)]
    # Gossip still flows, now under the new key.
    assert all(set(a.members().values()) == {"ALIVE"} for a in cluster)

    # The primary key cannot be removed; every member says so.
    refused = first.RemoveKey(pb.RemoveKeyRequest(key=NEW), timeout=30).result
    assert set(refused.errors) == {"k-1", "k-2", "k-3"}

    shown = keys_cli(cluster[0], "--list", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["keys"] == [
        {"key": base64.b64encode(NEW).decode(), "members": 3, "primary_members": 3}
    ]
    refused_cli = keys_cli(cluster[0], "--remove", base64.b64encode(NEW).decode())
    assert refused_cli.returncode == 1
    assert len(refused_cli.stderr.strip().splitlines()) == 1


def test_a_restarted_member_keeps_the_rotated_key(
    cluster: list[AgentProcess], tmp_path: Path
) -> None:
    first = keyring(cluster[0])
    first.InstallKey(pb.InstallKeyRequest(key=NEW), timeout=30)
    first.UseKey(pb.UseKeyRequest(key=NEW), timeout=30)
    first.RemoveKey(pb.RemoveKeyRequest(key=OLD), timeout=30)
    third = cluster[2]
    assert third.terminate() == 0
    # Restarted with the old --encrypt flag: the keyring file (new key) wins.
    restarted = start_agent(
        "k-3", host=third.host, port=third.port, args=list(third.extra_args), log_dir=tmp_path
    )
    cluster[2] = restarted
    assert wait_until(
        lambda: all(
            set(a.members().values()) == {"ALIVE"} and len(a.members()) == 3 for a in cluster
        ),
        timeout=30,
    ), [a.members() for a in cluster]


def test_errors(cluster: list[AgentProcess], tmp_path: Path) -> None:
    with pytest.raises(grpc.RpcError) as short:
        keyring(cluster[0]).InstallKey(pb.InstallKeyRequest(key=b"x" * 10), timeout=10)
    assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "16, 24 or 32 bytes" in (short.value.details() or "")
    plain = start_agent("plain", host="127.0.0.9", port=free_port("127.0.0.9"), log_dir=tmp_path)
    try:
        with pytest.raises(grpc.RpcError) as off:
            keyring(plain).ListKeys(pb.ListKeysRequest(), timeout=10)
        assert off.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--encrypt" in (off.value.details() or "")
    finally:
        plain.kill()
    usage = keys_cli(cluster[0])
    assert usage.returncode == 2


def keys_cli(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("keys", "--addr", agent.target, *args)
