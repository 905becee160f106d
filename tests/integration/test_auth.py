"""Token authentication: an agent started with --api-token, through every client."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.client import Client, ClientOptions
from controlplane.client.health import HealthStatus
from controlplane.errors import PermissionDenied, Unauthenticated
from controlplane.testing.agents import AgentProcess, current_secure_setup, running_agent
from controlplane.testing.agents import run_cli as cli
from controlplane.v1 import membership_pb2 as pb
from controlplane.v1 import membership_pb2_grpc

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-42"
# A token guards the public API only; the agent refuses to start unless gossip (and
# with it the internal push-pull on the same port) is encrypted, or mTLS is on.
GOSSIP_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(autouse=True)
def _own_credentials_only() -> None:
    # These agents are secured by --api-token alone; --secure-agents' mTLS and tokens
    # file would override what the tests are about.
    if current_secure_setup() is not None:
        pytest.skip("sets up its own token; --secure-agents does not apply")


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[AgentProcess]:
    args = ["--api-token", TOKEN, "--encrypt", GOSSIP_KEY, "--profile", "local"]
    with running_agent("secured", log_dir=tmp_path, args=args) as agent:
        yield agent


def list_members(agent: AgentProcess, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    with agent.channel() as channel:
        try:
            membership_pb2_grpc.MembershipStub(channel).ListMembers(
                pb.ListMembersRequest(), timeout=5, metadata=metadata
            )
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_raw_grpc_needs_the_token(secured: AgentProcess) -> None:
    assert list_members(secured, ()) == grpc.StatusCode.UNAUTHENTICATED
    wrong = (("authorization", "Bearer not-the-token"),)
    assert list_members(secured, wrong) == grpc.StatusCode.PERMISSION_DENIED
    right = (("authorization", f"Bearer {TOKEN}"),)
    assert list_members(secured, right) == grpc.StatusCode.OK
    # Health stays open for load balancers and probes.
    assert secured.health() == HealthStatus.SERVING


def test_the_cli_sends_the_token_from_the_flag_or_the_environment(secured: AgentProcess) -> None:
    refused = cli("members", "--addr", secured.target)
    assert refused.returncode == 1
    assert "UNAUTHENTICATED" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert cli("members", "--addr", secured.target, "--token", TOKEN).returncode == 0
    from_env = cli("members", "--addr", secured.target, env={"CONTROLPLANE_TOKEN": TOKEN})
    assert from_env.returncode == 0
    assert from_env.stdout.split()[0] == "secured"


def test_the_python_client_sends_the_token_on_calls_and_streams(secured: AgentProcess) -> None:
    options = ClientOptions(token=TOKEN, heartbeat=False)
    with Client([secured.target], options) as client:
        assert [m.name for m in client.members()] == ["secured"]
        watch = client.watch_members()
        try:
            update = next(iter(watch))
            assert "secured" in {m.name for m in update.members}
        finally:
            watch.close()
    anonymous = Client([secured.target], ClientOptions(heartbeat=False))
    with anonymous, pytest.raises(Unauthenticated, match="requires an API token"):
        anonymous.members()
    bad = Client([secured.target], ClientOptions(token="wrong-token-1", heartbeat=False))
    with bad, pytest.raises(PermissionDenied):
        bad.members()


def test_a_short_token_is_refused_at_start() -> None:
    result = cli("agent", "--api-token", "short")
    assert result.returncode == 2
    assert "api_token must be at least 8 printable characters" in result.stderr
