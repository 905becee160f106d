"""Scoped tokens and key material, against real agents.

Attack 1 of the hostile-network review: with `--encrypt` and no token, any TCP
client could read the AES gossip key with Keyring/ListKeys and rotate it with
InstallKey/UseKey. Now an agent reachable from the network serves key material only
to an operator token or a verified client certificate."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.testing.agents import (
    AgentProcess,
    SecureSetup,
    current_secure_setup,
    free_port,
    run_cli,
    running_agent,
    start_agent,
)
from controlplane.v1 import keyring_pb2, keyring_pb2_grpc, membership_pb2, membership_pb2_grpc

pytestmark = pytest.mark.integration

KEY = bytes(range(32))
OTHER_KEY = bytes(range(64, 96))
ENCRYPT = base64.b64encode(KEY).decode()
READER = "reader-secret-0123456789"
WRITER = "writer-secret-0123456789"
OPERATOR = "operator-secret-01234567"

TOKENS = f"""
[[token]]
name = "dashboards"
secret = "{READER}"
scopes = ["read"]

[[token]]
name = "deploy"
secret = "{WRITER}"
scopes = ["write"]

[[token]]
name = "ops"
secret = "{OPERATOR}"
scopes = ["operator"]
"""


@pytest.fixture(autouse=True)
def _own_credentials_only() -> None:
    # A fixture, not a module-level skip: --secure-agents turns secure mode on in a
    # session fixture, after this module was imported.
    if current_secure_setup() is not None:
        pytest.skip("these agents set up their own credentials; --secure-agents does not apply")


def _bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


def _call(
    agent: AgentProcess, name: str, request: object, secret: str = ""
) -> grpc.RpcError | None:
    metadata = _bearer(secret) if secret else ()
    with grpc.insecure_channel(agent.target) as channel:
        stub = keyring_pb2_grpc.KeyringStub(channel)
        try:
            getattr(stub, name)(request, timeout=10, metadata=metadata)
        except grpc.RpcError as error:
            return error
    return None


def _keyring_file(data_dir: Path) -> list[str]:
    keys: list[str] = json.loads((data_dir / "serf" / "local.keyring").read_text())
    return keys


@pytest.fixture
def exposed(tmp_path: Path) -> Iterator[tuple[AgentProcess, Path]]:
    """An encrypted agent without tokens, listening on every interface."""
    data_dir = tmp_path / "data"
    args = ["--bind", "0.0.0.0", "--encrypt", ENCRYPT, "--data-dir", str(data_dir)]
    args += ["--profile", "local"]
    with running_agent("exposed", log_dir=tmp_path, args=args) as agent:
        yield agent, data_dir


def test_key_material_is_not_served_anonymously_off_loopback(
    exposed: tuple[AgentProcess, Path],
) -> None:
    agent, data_dir = exposed
    other = base64.b64encode(OTHER_KEY).decode()
    attempts = {
        "ListKeys": keyring_pb2.ListKeysRequest(),
        "InstallKey": keyring_pb2.InstallKeyRequest(key=OTHER_KEY),
        "UseKey": keyring_pb2.UseKeyRequest(key=OTHER_KEY),
        "RemoveKey": keyring_pb2.RemoveKeyRequest(key=KEY),
    }
    for name, request in attempts.items():
        error = _call(agent, name, request)
        assert error is not None, f"{name} answered an anonymous caller"
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, name
        details = error.details() or ""
        assert f"Keyring/{name}" in details
        assert "verify_incoming" in details, details
        assert "operator" in details, details
    # Nothing changed: the one key is still the only key, in memory and on disk.
    assert _keyring_file(data_dir) == [ENCRYPT]
    assert other not in agent.log()
    # The rest of the API stays open, as before.
    with grpc.insecure_channel(agent.target) as channel:
        members = membership_pb2_grpc.MembershipStub(channel).ListMembers(
            membership_pb2.ListMembersRequest(), timeout=5
        )
    assert [m.name for m in members.members] == ["exposed"]
    # And the CLI says why in one line.
    shown = run_cli("keys", "--list", "--addr", agent.target)
    assert shown.returncode == 1
    assert "PERMISSION_DENIED" in shown.stderr
    assert len(shown.stderr.strip().splitlines()) == 1


@pytest.fixture
def scoped(tmp_path: Path) -> Iterator[tuple[AgentProcess, Path]]:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS)
    tokens.chmod(0o600)
    data_dir = tmp_path / "data"
    args = ["--bind", "0.0.0.0", "--encrypt", ENCRYPT, "--data-dir", str(data_dir)]
    args += ["--api-tokens-file", str(tokens), "--profile", "local"]
    with running_agent("scoped", log_dir=tmp_path, args=args) as agent:
        yield agent, data_dir


def test_each_scope_gets_what_it_needs_and_no_more(scoped: tuple[AgentProcess, Path]) -> None:
    agent, data_dir = scoped
    listing = keyring_pb2.ListKeysRequest()
    missing = _call(agent, "ListKeys", listing)
    assert missing is not None
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    for secret, holder in ((READER, "dashboards"), (WRITER, "deploy")):
        denied = _call(agent, "InstallKey", keyring_pb2.InstallKeyRequest(key=OTHER_KEY), secret)
        assert denied is not None
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (denied.details() or "").startswith(
            "Keyring/InstallKey needs the operator scope; "
            f"token '{holder}' has {'read' if secret == READER else 'write'}"
        ), denied.details()
    assert _keyring_file(data_dir) == [ENCRYPT]
    assert (
        _call(agent, "InstallKey", keyring_pb2.InstallKeyRequest(key=OTHER_KEY), OPERATOR) is None
    )
    assert len(_keyring_file(data_dir)) == 2
    # read may look, write may change, through the CLI with the token in a file.
    with grpc.insecure_channel(agent.target) as channel:
        stub = membership_pb2_grpc.MembershipStub(channel)
        stub.ListMembers(membership_pb2.ListMembersRequest(), timeout=5, metadata=_bearer(READER))
        with pytest.raises(grpc.RpcError) as refused:
            stub.UpdateTags(
                membership_pb2.UpdateTagsRequest(set={"zone": "a"}),
                timeout=5,
                metadata=_bearer(READER),
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "needs the write scope" in (refused.value.details() or "")
        stub.UpdateTags(
            membership_pb2.UpdateTagsRequest(set={"zone": "a"}),
            timeout=5,
            metadata=_bearer(WRITER),
        )
    # Secrets never reach the log; token names do.
    log = agent.log()
    assert "dashboards (read)" in log
    for secret in (READER, WRITER, OPERATOR, ENCRYPT):
        assert secret not in log


def test_the_cli_reads_its_token_from_a_file(
    scoped: tuple[AgentProcess, Path], tmp_path: Path
) -> None:
    agent, _ = scoped
    token_file = tmp_path / "operator.token"
    token_file.write_text(OPERATOR + "\n")
    listed = run_cli("keys", "--list", "--addr", agent.target, "--token-file", str(token_file))
    assert listed.returncode == 0, listed.stderr
    assert ENCRYPT in listed.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[token]]\nname = 'x'\nsecret = 'short'\nscopes = ['read']\n", "secret must be 16"),
        (
            "[[token]]\nname = 'x'\nsecret = '0123456789abcdef'\nscopes = ['admin']\n",
            "scopes must be a non-empty list of read, write, operator",
        ),
        ("[[token]\n", "not valid TOML"),
        ("", "holds no [[token]] tables"),
    ],
)
def test_a_bad_tokens_file_stops_the_start(tmp_path: Path, content: str, message: str) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(content)
    port = free_port()
    args = ["--encrypt", ENCRYPT, "--api-tokens-file", str(tokens), "--port", str(port)]
    result = run_cli("agent", *args, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "tokens file" in lines[0]


def test_a_loopback_agent_without_tokens_still_serves_its_keys(tmp_path: Path) -> None:
    agent = start_agent("local", log_dir=tmp_path, args=["--encrypt", ENCRYPT])
    try:
        assert _call(agent, "ListKeys", keyring_pb2.ListKeysRequest()) is None
    finally:
        agent.kill()


def test_api_token_from_the_environment_joins_the_file_tokens(tmp_path: Path) -> None:
    """CONTROLPLANE_API_TOKEN keeps the secret out of /proc/PID/cmdline; it is an
    operator token named "api_token", alongside the file's tokens."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS)
    tokens.chmod(0o600)
    env_token = "environment-secret-012345"
    args = ["--bind", "0.0.0.0", "--encrypt", ENCRYPT, "--api-tokens-file", str(tokens)]
    agent = start_agent(
        "env", log_dir=tmp_path, args=args, env={"CONTROLPLANE_API_TOKEN": env_token}
    )
    try:
        assert env_token not in Path(f"/proc/{agent.process.pid}/cmdline").read_text()
        assert _call(agent, "ListKeys", keyring_pb2.ListKeysRequest(), env_token) is None
        denied = _call(agent, "ListKeys", keyring_pb2.ListKeysRequest(), READER)
        assert denied is not None
        assert denied.details() == (
            "Keyring/ListKeys needs the operator scope; token 'dashboards' has read"
        )
        assert "api_token (operator)" in agent.log()
        assert env_token not in agent.log()
    finally:
        agent.kill()


def test_a_verified_client_certificate_may_read_the_keys_without_tokens(tmp_path: Path) -> None:
    """mTLS (verify_incoming) and no tokens: the certificate is the credential."""
    setup = SecureSetup.create(tmp_path / "pki")
    args = ["--bind", "0.0.0.0", "--encrypt", ENCRYPT, "--profile", "local"]
    args += ["--tls-ca-file", str(setup.ca_file), "--tls-cert-file", str(setup.agent_cert_file)]
    args += ["--tls-key-file", str(setup.agent_key_file), "--verify-incoming"]
    agent = start_agent("mtls", log_dir=tmp_path, args=args, wait=False)
    agent.secure = setup  # wait_serving over mTLS
    try:
        agent.wait_serving()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=setup.ca_file.read_bytes(),
            private_key=setup.client_key_file.read_bytes(),
            certificate_chain=setup.client_cert_file.read_bytes(),
        )
        with grpc.secure_channel(agent.target, credentials) as channel:
            answer = keyring_pb2_grpc.KeyringStub(channel).ListKeys(
                keyring_pb2.ListKeysRequest(), timeout=10
            )
        assert [status.key for status in answer.keys] == [KEY]
        # The same agent still refuses a caller without a certificate: the TLS
        # handshake fails before any RPC.
        with grpc.insecure_channel(agent.target) as plain, pytest.raises(grpc.RpcError):
            keyring_pb2_grpc.KeyringStub(plain).ListKeys(keyring_pb2.ListKeysRequest(), timeout=5)
    finally:
        agent.kill()
