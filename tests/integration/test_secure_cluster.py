"""A production-shaped cluster: three agents with mTLS (verify_incoming, verify_outgoing),
a scoped token file and an encrypted keyring. The rest of the integration tier runs
against such agents with `make pytest-secure`; this module checks the edges that the
credentials themselves add: who is refused, with which status, and why."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.testing.agents import (
    AgentProcess,
    SecureSetup,
    free_port,
    secure_mode,
    start_agent,
    wait_until,
)
from controlplane.v1 import keyring_pb2, keyring_pb2_grpc, membership_pb2, membership_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def setup(tmp_path: Path) -> SecureSetup:
    return SecureSetup.create(tmp_path / "pki")


@pytest.fixture
def cluster(tmp_path: Path, setup: SecureSetup) -> Iterator[list[AgentProcess]]:
    port = free_port(HOSTS[0], *HOSTS[1:])
    agents: list[AgentProcess] = []
    secure_mode(setup)
    try:
        for index, host in enumerate(HOSTS, start=1):
            args = ["--profile", "local", "--drain-period", "0", "--encrypt", KEY]
            args += ["--data-dir", str(tmp_path / f"data-{index}")]
            if index > 1:
                args += ["--join", f"{HOSTS[0]}:{port}"]
            agents.append(
                start_agent(f"s-{index}", host=host, port=port, args=args, log_dir=tmp_path)
            )
        assert wait_until(lambda: all(len(a.members()) == 3 for a in agents), timeout=30), [
            a.log() for a in agents
        ]
        yield agents
    finally:
        secure_mode(None)
        for agent in agents:
            agent.kill()


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def _list_members(channel: grpc.Channel) -> tuple[grpc.StatusCode, str]:
    stub = membership_pb2_grpc.MembershipStub(channel)
    return _code(lambda: stub.ListMembers(membership_pb2.ListMembersRequest(), timeout=5))


def _list_keys(channel: grpc.Channel) -> tuple[grpc.StatusCode, str]:
    stub = keyring_pb2_grpc.KeyringStub(channel)
    return _code(lambda: stub.ListKeys(keyring_pb2.ListKeysRequest(), timeout=10))


def test_a_client_without_a_certificate_is_refused(
    cluster: list[AgentProcess], setup: SecureSetup
) -> None:
    # TLS that trusts the agents' CA, but no client certificate: the handshake fails.
    bare = grpc.ssl_channel_credentials(root_certificates=setup.ca_file.read_bytes())
    with_token = grpc.composite_channel_credentials(
        bare, grpc.access_token_call_credentials(setup.operator_token)
    )
    for agent in cluster:
        with grpc.secure_channel(agent.target, with_token) as channel:
            assert _list_members(channel)[0] == grpc.StatusCode.UNAVAILABLE
        # Plaintext gets nowhere either.
        with grpc.insecure_channel(agent.target) as channel:
            assert _list_members(channel)[0] == grpc.StatusCode.UNAVAILABLE
        assert set(agent.members().values()) == {"ALIVE"}


def test_a_certificate_without_a_token_is_unauthenticated(
    cluster: list[AgentProcess], setup: SecureSetup
) -> None:
    transport = grpc.ssl_channel_credentials(
        root_certificates=setup.ca_file.read_bytes(),
        private_key=setup.client_key_file.read_bytes(),
        certificate_chain=setup.client_cert_file.read_bytes(),
    )
    with grpc.secure_channel(cluster[1].target, transport) as channel:
        code, details = _list_members(channel)
    assert code == grpc.StatusCode.UNAUTHENTICATED, details


def test_scopes_hold_across_the_cluster(cluster: list[AgentProcess], setup: SecureSetup) -> None:
    for agent in cluster:
        reader = grpc.secure_channel(agent.target, setup.channel_credentials(setup.read_token))
        with reader:
            assert _list_members(reader)[0] == grpc.StatusCode.OK
            code, details = _list_keys(reader)
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert "operator" in details, details
        with agent.channel() as operator:
            code, details = _list_keys(operator)
            assert code == grpc.StatusCode.OK, details


def test_the_cluster_survives_a_member_restart_over_mtls(
    cluster: list[AgentProcess], tmp_path: Path, setup: SecureSetup
) -> None:
    """Push-pull between agents runs over mTLS: a restarted member rejoins from its
    snapshot and every agent lists it alive again."""
    victim = cluster[2]
    assert victim.terminate() == 0
    assert wait_until(lambda: cluster[0].members().get("s-3") == "LEFT", timeout=30)
    (tmp_path / "restart").mkdir()
    secure_mode(setup)
    try:
        restarted = start_agent(
            "s-3",
            host=victim.host,
            port=victim.port,
            args=victim.extra_args,
            log_dir=tmp_path / "restart",
        )
    finally:
        secure_mode(None)
    cluster[2] = restarted
    assert wait_until(
        lambda: all(a.members() == {f"s-{i}": "ALIVE" for i in (1, 2, 3)} for a in cluster),
        timeout=30,
    ), [a.members() for a in cluster]
