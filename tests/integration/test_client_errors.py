"""Errors reach callers as `controlplane.errors` exceptions (never grpc.RpcError),
with field violations; the asyncio client fails over and keeps a local ring."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from controlplane.client import AsyncClient, Client, ClientOptions
from controlplane.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until

pytestmark = [pytest.mark.integration]


def test_errors_are_the_shared_taxonomy(agent: AgentProcess) -> None:
    with Client(agent.target, ClientOptions(heartbeat=False)) as client:
        with pytest.raises(InvalidArgument) as bad:
            client.members(name_pattern="(")
        assert [v.field for v in bad.value.violations] == ["name_pattern"]
        with pytest.raises(NotFound):
            client.remove_node("10.1.1.1:1")
        with pytest.raises(FailedPrecondition):
            client.get_node("key", ring="empty")
        ring = client.ring("empty")
        with pytest.raises(FailedPrecondition):
            ring.get_node("key")
        ring.close()
    with pytest.raises(Unavailable):
        client.members()
    with Client("127.0.0.1:1", ClientOptions(heartbeat=False), timeout=2) as nowhere:
        with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1") as caught:
            nowhere.members()
        assert not isinstance(caught.value, grpc.RpcError)


def test_async_client_fails_over_and_looks_up_locally(tmp_path: Path) -> None:
    port = free_port("127.0.0.1", "127.0.0.2")
    args = ["--profile", "local", "--drain-period", "0"]
    first = start_agent("a0", host="127.0.0.1", port=port, args=args, log_dir=tmp_path)
    second = start_agent(
        "a1", host="127.0.0.2", port=port, args=[*args, "--join", first.target], log_dir=tmp_path
    )
    agents = {first.target: first, second.target: second}
    try:
        assert wait_until(lambda: len(first.members()) == 2, timeout=30)

        async def scenario() -> None:
            options = ClientOptions(heartbeat_interval_override=0.5)
            async with AsyncClient([first.target], options) as client:
                for _ in range(100):
                    if len(client.servers()) == 2:
                        break
                    await asyncio.sleep(0.1)
                assert len(client.servers()) == 2
                added = await client.add_node("10.0.0.7", 80, ring="cache")
                ring = await client.ring("cache")
                for _ in range(100):
                    if ring.version >= added.version and ring.nodes():
                        break
                    await asyncio.sleep(0.1)
                assert ring.get_node("user:1") == "10.0.0.7:80"
                assert ring.state.checksum_matches
                # The registration must reach both agents before one is killed.
                for target in agents:
                    with Client(target, ClientOptions(heartbeat=False)) as direct:
                        assert wait_until(lambda: bool(direct.get_ring("cache").nodes), 10)
                await client.members()
                agents[client.current_server or ""].kill()
                names = {m.name for m in await client.members()}
                assert names == {"a0", "a1"}
                assert ring.get_node("user:2") == "10.0.0.7:80"
                with pytest.raises(InvalidArgument):
                    await client.members(name_pattern="(")
                ring.close()

        asyncio.run(scenario())
    finally:
        first.kill()
        second.kill()


def test_backups_answer_only_when_no_seed_does(agent: AgentProcess) -> None:
    dead = f"127.0.0.1:{free_port()}"
    options = ClientOptions(heartbeat=False, backups=[agent.target])
    with Client(dead, options, timeout=5) as client:
        assert client.members()  # the seed refuses connections; the backup answers
        assert client.current_server == agent.target
        assert agent.target in {s.address for s in client.servers()}
        assert client.set_backups([]) == 0
        with pytest.raises(Unavailable):
            client.members()
        assert client.set_backups([agent.target]) == 1
        assert client.members()
    with pytest.raises(ValueError, match="backups: "):
        ClientOptions(backups=["no-port"])
    with pytest.raises(ValueError, match="not a string"):
        ClientOptions(backups=agent.target)


def test_a_client_in_one_datacenter_keeps_the_others_servers_as_backups(
    tmp_path: Path,
) -> None:
    hosts = ("127.0.0.101", "127.0.0.102")
    port = free_port(*hosts)
    local = start_agent(
        "dc-a", host=hosts[0], port=port, args=["--datacenter", "dc1"], log_dir=tmp_path
    )
    remote = start_agent(
        "dc-b",
        host=hosts[1],
        port=port,
        args=["--datacenter", "dc2", "--join", local.target],
        log_dir=tmp_path,
    )
    try:
        assert wait_until(lambda: len(local.members()) == 2, timeout=20)
        options = ClientOptions(heartbeat=False, datacenter="dc1")
        with Client(local.target, options) as client:
            answer = client.heartbeat()
            assert {(s.name, s.datacenter) for s in answer.servers} == {
                ("dc-a", "dc1"),
                ("dc-b", "dc2"),
            }
            assert [s.address for s in client.backups()] == [remote.target]
            assert client.backups()[0].datacenter == "dc2"
            backups = client.backups()
            assert [s.name for s in client.servers() if s not in backups] == ["dc-a"]
    finally:
        remote.kill()
        local.kill()
