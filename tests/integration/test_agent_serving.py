"""A real agent process, inspected with the real grpcurl binary and the stubs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import grpc
import pytest

from controlplane.client.health import HealthStatus
from controlplane.testing.agents import AgentProcess, run_cli, start_agent

pytestmark = pytest.mark.integration

PUBLIC = [
    "controlplane.v1.Keyring",
    "controlplane.v1.Membership",
    "controlplane.v1.Ring",
    "controlplane.v1.ServerPool",
]


def run_grpcurl(grpcurl: str, *args: str) -> str:
    result = subprocess.run(
        [grpcurl, "-plaintext", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_lists_every_service(agent: AgentProcess, grpcurl: str) -> None:
    listed = run_grpcurl(grpcurl, agent.target, "list").split()
    assert listed == sorted(
        [*PUBLIC, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
    )


def test_grpcurl_describes_membership(agent: AgentProcess, grpcurl: str) -> None:
    described = run_grpcurl(grpcurl, agent.target, "describe", "controlplane.v1.Membership")
    assert "controlplane.v1.Membership is a service:" in described
    for rpc in (
        "rpc Join ( .controlplane.v1.JoinRequest ) returns ( .controlplane.v1.JoinResponse )",
        "rpc WatchMembers ( .controlplane.v1.WatchMembersRequest ) returns ( stream",
        "rpc GetLeader ( .controlplane.v1.GetLeaderRequest )",
    ):
        assert rpc in described


def test_grpcurl_describes_a_message_with_comments(agent: AgentProcess, grpcurl: str) -> None:
    described = run_grpcurl(grpcurl, agent.target, "describe", "controlplane.v1.GetNodesRequest")
    assert "int32 count = 3;" in described


@pytest.mark.parametrize("service", ["", *PUBLIC])
def test_grpcurl_health_check_per_service(agent: AgentProcess, grpcurl: str, service: str) -> None:
    body = json.dumps({"service": service})
    answer = run_grpcurl(grpcurl, "-d", body, agent.target, "grpc.health.v1.Health/Check")
    assert json.loads(answer) == {"status": "SERVING"}


def test_health_of_unknown_service_is_not_found(agent: AgentProcess) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        agent.health("controlplane.v1.Nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_sigterm_stops_gracefully_with_exit_zero(agent: AgentProcess) -> None:
    assert agent.health() == HealthStatus.SERVING
    assert agent.terminate() == 0
    assert "stopped" in agent.log()


# Loaded by the agent's interpreter before anything else: any service attached as
# gRPC registered methods stops the agent at start, naming the service.
_REFUSE_REGISTERED_METHODS = """
import grpc.aio._server


def _refuse(self, service, handlers):
    raise RuntimeError(f"{service} was attached as registered methods")


grpc.aio._server.Server.add_registered_method_handlers = _refuse
"""


def _sitecustomized(tmp_path: Path, code: str) -> dict[str, str]:
    """An environment whose interpreters run `code` before anything else."""
    (tmp_path / "sitecustomize.py").write_text(code)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path}


def test_every_service_is_attached_without_registered_methods(tmp_path: Path, grpcurl: str) -> None:
    # grpc.aio's server passes every registered method's pending future to
    # asyncio.wait on each call it accepts: 40-odd of them cost ~200 us per call.
    env = _sitecustomized(tmp_path, _REFUSE_REGISTERED_METHODS)
    agent = start_agent("generic", log_dir=tmp_path, env=env, wait=False)
    try:
        try:
            agent.wait_serving()
        except Exception:
            pytest.fail(f"the agent did not start:\n{agent.log()}")
        assert agent.health() == HealthStatus.SERVING
        listed = run_grpcurl(grpcurl, agent.target, "list").split()
        assert [*PUBLIC, "grpc.health.v1.Health"] == [s for s in listed if "reflection" not in s]
        assert list(agent.members()) == ["generic"]
    finally:
        agent.kill()


def test_the_agent_runs_on_uvloop_and_says_so(agent: AgentProcess) -> None:
    from importlib.metadata import version

    assert f"event loop: uvloop {version('uvloop')}" in agent.log()


def _without_uvloop(tmp_path: Path) -> dict[str, str]:
    """An environment whose interpreter finds no uvloop, as where it is not installed."""
    return _sitecustomized(tmp_path, "import sys\nsys.modules['uvloop'] = None\n")


def test_without_uvloop_the_agent_runs_on_asyncio_and_says_why(tmp_path: Path) -> None:
    agent = start_agent("plain", log_dir=tmp_path, env=_without_uvloop(tmp_path))
    try:
        assert list(agent.members()) == ["plain"]
        log = agent.log()
        assert "uvloop is not installed; running on asyncio's event loop" in log
        assert "event loop: asyncio" in log
    finally:
        agent.kill()


def test_asking_for_uvloop_where_it_is_missing_is_exit_2(tmp_path: Path) -> None:
    result = run_cli("agent", "--event-loop", "uvloop", env=_without_uvloop(tmp_path), timeout=30)
    assert result.returncode == 2, result.stderr
    refusal = (
        "controlplane: event_loop uvloop: uvloop is not installed"
        " (event_loop auto or asyncio runs without)"
    )
    assert result.stderr.strip().splitlines() == [refusal]
