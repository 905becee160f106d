"""The real agent's `Gossip/Ping` (memberlist's TCP fallback ping, served on the gRPC
port): a ping of itself is answered with its sequence number; a ping for another
name, a frame it cannot open, several messages or an oversized frame are refused
with PERMISSION_DENIED naming the reason, and the agent keeps serving."""

from __future__ import annotations

import grpc
import pytest

from controlplane.gossip import Keyring, codec
from controlplane.testing.agents import AgentProcess
from controlplane.wire.v1 import gossip_pb2, gossip_pb2_grpc

pytestmark = [pytest.mark.integration]


def frame(*messages: bytes, label: str = "", keyring: Keyring | None = None) -> bytes:
    header = codec.frame_header(label, keyring is not None)
    return codec.seal(header, codec.packet_body(list(messages)), keyring)


def ping(agent: AgentProcess, request: bytes) -> gossip_pb2.PingResponse:
    with agent.channel() as channel:
        stub = gossip_pb2_grpc.GossipStub(channel)
        return stub.Ping(gossip_pb2.PingRequest(frame=request), timeout=5)


def test_the_agent_answers_a_ping_of_itself_and_refuses_the_rest(agent: AgentProcess) -> None:
    for target in (agent.name, ""):
        answer = ping(agent, frame(codec.encode_ping(4242, target, "prober")))
        (message,) = codec.decode_packet(codec.open_frame(answer.frame, b"", None)).messages
        assert message.WhichOneof("body") == "ack"
        assert message.ack.seq_no == 4242

    refused = [
        (frame(codec.encode_ping(1, "someone-else", "prober")), "wrong_target"),
        (
            frame(codec.encode_ping(1, agent.name, "p"), codec.encode_ping(2, agent.name, "p")),
            "invalid_message",
        ),
        (frame(codec.encode_ack(1)), "invalid_message"),
        (
            frame(codec.encode_ping(1, agent.name, "p"), keyring=Keyring([bytes(16)])),
            "encrypted_without_keyring",
        ),
        (frame(codec.encode_ping(1, agent.name, "p"), label="another-cluster"), "label"),
        (b"\x01\x00\x00\xff\xff", "decode"),
        (b"\x01\x00\x00" + bytes(65_600), "oversized"),
    ]
    for request, reason in refused:
        with pytest.raises(grpc.RpcError) as error:
            ping(agent, request)
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED, reason
        assert error.value.details() == f"stream ping refused: {reason}"
    assert agent.members() == {agent.name: "ALIVE"}
