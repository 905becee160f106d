"""One real agent inside a crowd of 500 gossip members (controlplane.testing.crowd).

The crowd plays the rest of a 500-member cluster over the real wire protocol on
127.1.x.y; the agent joins it through one member and lives through a 10 %
failure, a 10 % join and some flapping. Bounds are generous for a loaded 2-core
machine but still mean something: a Health/Check that takes a quarter of a
second at p99, or a loop stalled for a quarter of a second, would fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.gossip import codec
from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until
from controlplane.testing.crowd import Crowd, CrowdConfig, CrowdMember, CrowdProcess
from controlplane.v1 import membership_pb2, membership_pb2_grpc
from controlplane.wire.v1 import gossip_pb2 as pb
from controlplane.wire.v1 import gossip_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 500
AGENT_HOST = "127.2.0.2"
# The crowd concludes "dead" 4 to 6 s after its suspicion (the lan suspicion timeout for
# 500 members is about 11 s), so the failure phase fits the test's minute.
CROWD_ARGS = ["--dead-after", "4,6", "--max-seconds", "240"]
CONVERGE = 40.0
# Measured on this 2-core machine when quiet: Health/Check p99 3 ms, max 15-25 ms,
# agent loop lag max 5 ms. With the machine saturated by other work, every process
# (the crowd included) sees stalls of 100-200 ms; the bounds leave room for that.
HEALTH_MAX = 1.0
HEALTH_P99 = 0.25
LOOP_LAG_MAX_MS = 250.0
LAG_SUMMARY = re.compile(r"loop lag: max ([\d.]+) ms, p99 ([\d.]+) ms over (\d+) samples")


class HealthProbe:
    """Health/Check every 20 ms on a thread until stopped; keeps latencies and failures."""

    def __init__(self, target: str) -> None:
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._channel = grpc.insecure_channel(target)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stub = health_pb2_grpc.HealthStub(self._channel)
        request = health_pb2.HealthCheckRequest()
        while not self._stop.wait(0.02):
            started = time.perf_counter()
            try:
                stub.Check(request, timeout=5.0)
            except grpc.RpcError as error:
                self.failures.append(str(error.code()))
            else:
                self.latencies.append(time.perf_counter() - started)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._channel.close()


def alive_and_failed(agent: AgentProcess) -> tuple[set[str], set[str]]:
    with grpc.insecure_channel(agent.target) as channel:
        stub = membership_pb2_grpc.MembershipStub(channel)
        with contextlib.suppress(grpc.RpcError):
            response = stub.ListMembers(membership_pb2.ListMembersRequest(), timeout=10)
            alive = {
                m.name for m in response.members if m.status == membership_pb2.MEMBER_STATUS_ALIVE
            }
            failed = {
                m.name for m in response.members if m.status == membership_pb2.MEMBER_STATUS_FAILED
            }
            return alive, failed
    return set(), set()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[CrowdProcess, AgentProcess]]:
    with CrowdProcess.start(SIZE, log_dir=tmp_path, args=CROWD_ARGS) as crowd:
        agent = start_agent(
            "fleet-agent",
            host=AGENT_HOST,
            port=free_port(AGENT_HOST),
            args=["--join", crowd.seed, "--data-dir", str(tmp_path / "data")],
            log_dir=tmp_path,
        )
        try:
            yield crowd, agent
        finally:
            agent.kill()


def test_an_agent_in_a_fleet_of_500_stays_responsive_and_correct(
    fleet: tuple[CrowdProcess, AgentProcess],
) -> None:
    crowd, agent = fleet
    probe = HealthProbe(agent.target)
    try:
        everyone = set(crowd.view()["alive"]) | {agent.name}
        assert wait_until(lambda: alive_and_failed(agent)[0] == everyone, CONVERGE, 0.5), (
            f"{len(alive_and_failed(agent)[0])} of {len(everyone)} listed alive after the join"
        )

        failed = set(crowd.fail(fraction=0.1))
        assert len(failed) == SIZE // 10
        assert wait_until(lambda: failed <= alive_and_failed(agent)[1], CONVERGE, 0.5), (
            f"{len(failed - alive_and_failed(agent)[1])} failed members not reported failed"
        )

        joined = set(crowd.grow(fraction=0.1))
        assert wait_until(lambda: joined <= alive_and_failed(agent)[0], CONVERGE, 0.5)

        settled = crowd.flap(0.01, 8.0, down=(1.0, 4.0))
        time.sleep(settled)
        view = crowd.view()
        assert wait_until(lambda: set(view["alive"]) <= alive_and_failed(agent)[0], CONVERGE, 0.5)
        stats = crowd.stats()
    finally:
        probe.stop()

    assert probe.failures == []
    latencies = sorted(probe.latencies)
    assert len(latencies) > 200
    p99 = latencies[int(0.99 * len(latencies))]
    assert latencies[-1] < HEALTH_MAX, f"Health/Check max {latencies[-1] * 1000:.0f} ms"
    assert p99 < HEALTH_P99, f"Health/Check p99 {p99 * 1000:.0f} ms"
    # The rest of the cluster never had to suspect the agent.
    assert stats["agent_suspected"] == 0, stats["probes_missed"]
    assert stats["push_pull_joins"] == 1

    assert agent.terminate(timeout=30) == 0
    summary = LAG_SUMMARY.findall(agent.log())
    if summary:
        lag_max = float(summary[-1][0])
        assert lag_max < LOOP_LAG_MAX_MS, f"agent loop lag max {lag_max} ms"


async def test_the_crowd_answers_on_every_address_and_a_failed_member_goes_silent() -> None:
    crowd = Crowd(CrowdConfig(size=300, block=3, probe_agents=False, push_pull_agents=False))
    await crowd.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind((AGENT_HOST, 0))
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        header = codec.frame_header("", False)
        last = crowd.core.members[299]

        async def ping(member: CrowdMember, seq_no: int) -> bytes | None:
            body = codec.packet_body([codec.encode_ping(seq_no, member.name, "t")])
            data = codec.seal(header, body, None)
            await loop.sock_sendto(client, data, member.address)
            with contextlib.suppress(TimeoutError):
                reply, source = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 2.0)
                assert source == member.address
                return reply
            return None

        reply = await ping(last, 7)
        assert reply is not None
        ack = codec.decode_packet(codec.open_frame(reply, b"", None)).messages[0]
        assert ack.WhichOneof("body") == "ack"
        assert ack.ack.seq_no == 7

        # Push-pull on a member's own address reaches the shared state.
        request = pb.PushPullState(protocol_version=codec.PROTOCOL_VERSION, join=True)
        frame = codec.seal(header, request.SerializeToString(), None)
        host, port = last.address
        async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
            response = await gossip_pb2_grpc.GossipStub(channel).PushPull(
                pb.PushPullRequest(frame=frame), timeout=5
            )
        state = pb.PushPullState.FromString(codec.open_frame(response.frame, b"", None))
        assert len(state.members) == 300

        crowd.core.fail_members([last], crowd.now, None)
        crowd.apply([])
        assert await ping(last, 8) is None
        async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gossip_pb2_grpc.GossipStub(channel).PushPull(
                    pb.PushPullRequest(frame=frame), timeout=5
                )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        client.close()
        await crowd.stop()
