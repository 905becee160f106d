"""TLS and mTLS on the agent's gRPC port, with certificates made by trustme: the
Python client, the CLI and grpcurl over TLS; client certificates required by
verify_incoming; two agents joining over mTLS with verify_server_hostname; SIGHUP
reloads; bad files and bad combinations refused with exit 2 and one line."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme

from controlplane.client import AsyncClient, Client, ClientOptions
from controlplane.client.health import HealthStatus
from controlplane.errors import Unavailable
from controlplane.testing.agents import (
    AgentProcess,
    StreamCollector,
    current_secure_setup,
    free_port,
    running_agent,
    start_agent,
    wait_until,
)
from controlplane.testing.agents import run_cli as cli
from controlplane.v1 import membership_pb2 as pb
from controlplane.v1 import membership_pb2_grpc, server_pool_pb2_grpc
from controlplane.v1 import server_pool_pb2 as sp

pytestmark = pytest.mark.integration

HOSTS = ("127.0.0.1", "localhost")
# Under --secure-agents the CLI's environment carries TLS files; some cases need none.
NO_TLS_ENVIRONMENT = {
    "CONTROLPLANE_CACERT": "",
    "CONTROLPLANE_CLIENT_CERT": "",
    "CONTROLPLANE_CLIENT_KEY": "",
}
SERVER_NAME = "server.controlplane"


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def issue(ca: trustme.CA, directory: Path, stem: str, *names: str) -> Pem:
    issued = ca.issue_cert(*names)
    pem = Pem(directory / f"{stem}.pem", directory / f"{stem}-key.pem")
    issued.cert_chain_pems[0].write_to_path(str(pem.cert))
    issued.private_key_pem.write_to_path(str(pem.key))
    return pem


def write_ca(ca: trustme.CA, path: Path) -> Path:
    ca.cert_pem.write_to_path(str(path))
    return path


def credentials(ca: Path, client: Pem | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def list_members(
    target: str, creds: grpc.ChannelCredentials, server_name: str = ""
) -> grpc.StatusCode:
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    with grpc.secure_channel(target, creds, options=options) as channel:
        try:
            membership_pb2_grpc.MembershipStub(channel).ListMembers(
                pb.ListMembersRequest(), timeout=5
            )
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def member_names(target: str, creds: grpc.ChannelCredentials) -> set[str]:
    with grpc.secure_channel(target, creds) as channel:
        response = membership_pb2_grpc.MembershipStub(channel).ListMembers(
            pb.ListMembersRequest(), timeout=5
        )
    return {m.name for m in response.members if m.status == pb.MEMBER_STATUS_ALIVE}


def tls_args(ca: Path | None, pem: Pem, *extra: str) -> list[str]:
    args = ["--profile", "local", "--tls-cert-file", str(pem.cert), "--tls-key-file", str(pem.key)]
    if ca is not None:
        args += ["--tls-ca-file", str(ca)]
    return [*args, *extra]


@contextlib.contextmanager
def tls_agent(
    name: str,
    log_dir: Path,
    args: list[str],
    creds: grpc.ChannelCredentials,
    server_name: str = "",
) -> Iterator[AgentProcess]:
    """An agent reached over TLS: serving once ListMembers answers through `creds`."""
    agent = start_agent(name, log_dir=log_dir, args=args, wait=False)
    try:

        def up() -> bool:
            assert agent.process.poll() is None, agent.log()
            return list_members(agent.target, creds, server_name) == grpc.StatusCode.OK

        assert wait_until(up, 20), agent.log()
        yield agent
    finally:
        agent.kill()


@pytest.fixture(autouse=True)
def _own_tls_only() -> None:
    # These agents get their own certificates; --secure-agents' would override them.
    if current_secure_setup() is not None:
        pytest.skip("sets up its own TLS; --secure-agents does not apply")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | Pem]:
    directory = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    return {
        "ca": write_ca(ca, directory / "ca.pem"),
        "other_ca": write_ca(other, directory / "other-ca.pem"),
        "agent": issue(ca, directory, "agent", *HOSTS),
        # verify_server_hostname: servers' certificates carry the server name, no address.
        "server_a": issue(ca, directory, "server-a", SERVER_NAME),
        "server_b": issue(ca, directory, "server-b", SERVER_NAME),
        "client": issue(ca, directory, "client", "client.controlplane"),
        "stranger": issue(other, directory, "stranger", SERVER_NAME, *HOSTS),
    }


def test_a_tls_agent_serves_the_client_the_cli_and_grpcurl(
    tmp_path: Path, pki: dict[str, Path | Pem], grpcurl: str
) -> None:
    ca, pem = pki["ca"], pki["agent"]
    assert isinstance(ca, Path)
    assert isinstance(pem, Pem)
    with tls_agent("tls-1", tmp_path, tls_args(None, pem), credentials(ca)) as agent:
        assert "TLS on the gRPC port, client certificates not required" in agent.log()
        options = ClientOptions(ca_file=str(ca), heartbeat=False)
        with Client([agent.target], options) as client:
            assert [m.name for m in client.members()] == ["tls-1"]
        # Its TLS is gRPC's: the agent process never loads Python's OpenSSL bindings
        # (controlplane/shell/nossl.py), about 7 MB of resident memory.
        maps = Path(f"/proc/{agent.process.pid}/maps").read_text()
        assert "libcrypto.so" not in maps
        assert "/_ssl." not in maps

        ok = cli("members", "--addr", agent.target, "--ca-file", str(ca))
        assert ok.returncode == 0, ok.stderr
        assert "tls-1" in ok.stdout
        via_env = cli("members", "--addr", agent.target, env={"CONTROLPLANE_CACERT": str(ca)})
        assert via_env.returncode == 0, via_env.stderr
        # A plaintext caller cannot talk to a TLS port.
        plain = cli("members", "--addr", agent.target)
        assert plain.returncode == 1
        assert len(plain.stderr.strip().splitlines()) == 1
        # The name expected in the certificate can be overridden.
        wrong_name = cli(
            "members", "--addr", agent.target, "--ca-file", str(ca), "--tls-server-name", "x.y"
        )
        assert wrong_name.returncode == 1
        right_name = cli(
            "members", "--addr", agent.target, "--ca-file", str(ca),
            "--tls-server-name", "localhost",
        )  # fmt: skip
        assert right_name.returncode == 0, right_name.stderr

        listed = subprocess.run(
            [grpcurl, "-cacert", str(ca), agent.target, "list"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert "controlplane.v1.Membership" in listed.stdout.split()


def test_mtls_refuses_a_client_without_a_certificate_of_its_ca(
    tmp_path: Path, pki: dict[str, Path | Pem]
) -> None:
    ca, other_ca, pem, client, stranger = (
        pki["ca"], pki["other_ca"], pki["agent"], pki["client"], pki["stranger"],
    )  # fmt: skip
    assert isinstance(ca, Path)
    assert isinstance(other_ca, Path)
    assert isinstance(pem, Pem)
    assert isinstance(client, Pem)
    assert isinstance(stranger, Pem)
    args = tls_args(ca, pem, "--verify-incoming")
    with tls_agent("mtls-1", tmp_path, args, credentials(ca, client)) as agent:
        assert "client certificates required (verify_incoming)" in agent.log()
        # The handshake itself fails: no RPC reaches the agent.
        assert list_members(agent.target, credentials(ca)) == grpc.StatusCode.UNAVAILABLE
        assert list_members(agent.target, credentials(ca, stranger)) == (
            grpc.StatusCode.UNAVAILABLE
        )
        assert list_members(agent.target, credentials(ca, client)) == grpc.StatusCode.OK

        env = {
            "CONTROLPLANE_CACERT": str(ca),
            "CONTROLPLANE_CLIENT_CERT": str(client.cert),
            "CONTROLPLANE_CLIENT_KEY": str(client.key),
        }
        assert cli("members", "--addr", agent.target, env=env).returncode == 0
        refused = cli("members", "--addr", agent.target, "--ca-file", str(ca))
        assert refused.returncode == 1
        options = ClientOptions(
            ca_file=str(ca), cert_file=str(client.cert), key_file=str(client.key), heartbeat=False
        )
        with Client([agent.target], options) as python_client:
            assert [m.name for m in python_client.members()] == ["mtls-1"]

        async def from_asyncio() -> list[str]:
            async with AsyncClient([agent.target], options) as aio_client:
                return [m.name for m in await aio_client.members()]

        assert asyncio.run(from_asyncio()) == ["mtls-1"]
        without = ClientOptions(ca_file=str(ca), heartbeat=False, timeout=2)
        with Client([agent.target], without) as refused_client, pytest.raises(Unavailable):
            refused_client.members()


def test_mtls_agents_join_and_a_peer_of_another_ca_is_refused(
    tmp_path: Path, pki: dict[str, Path | Pem]
) -> None:
    ca, a_pem, b_pem, client, stranger = (
        pki["ca"], pki["server_a"], pki["server_b"], pki["client"], pki["stranger"],
    )  # fmt: skip
    assert isinstance(ca, Path)
    assert isinstance(a_pem, Pem)
    assert isinstance(b_pem, Pem)
    assert isinstance(client, Pem)
    assert isinstance(stranger, Pem)
    secure = ("--verify-incoming", "--verify-outgoing", "--verify-server-hostname")
    # Servers' certificates name no address: only the server name set by the dialler
    # (verify_server_hostname) lets the handshakes succeed.
    creds = credentials(ca, client)
    with tls_agent("a", tmp_path, tls_args(ca, a_pem, *secure), creds, SERVER_NAME) as a:
        # Callers check the server name too.
        assert list_members(a.target, creds) == grpc.StatusCode.UNAVAILABLE
        assert list_members(a.target, creds, SERVER_NAME) == grpc.StatusCode.OK
        b_args = tls_args(ca, b_pem, *secure, "--join", a.target)
        b = start_agent("b", log_dir=tmp_path, args=b_args, wait=False)
        # A stranger trusts this cluster's CA, but its own certificate is another CA's.
        c_args = tls_args(ca, stranger, *secure, "--join", a.target)
        c = start_agent("c", log_dir=tmp_path, args=c_args, wait=False)
        try:

            def names(agent: AgentProcess) -> set[str]:
                options = [("grpc.ssl_target_name_override", SERVER_NAME)]
                with grpc.secure_channel(agent.target, creds, options=options) as channel:
                    try:
                        response = membership_pb2_grpc.MembershipStub(channel).ListMembers(
                            pb.ListMembersRequest(), timeout=2
                        )
                    except grpc.RpcError:
                        return set()
                return {m.name for m in response.members if m.status == pb.MEMBER_STATUS_ALIVE}

            assert wait_until(lambda: names(a) == {"a", "b"} and names(b) == {"a", "b"}, 20), (
                a.log() + b.log()
            )
            # c's join attempts fail at the handshake: a never learns of it.
            assert wait_until(lambda: "join attempt 2 reached no member" in c.log(), 20), c.log()
            assert names(a) == {"a", "b"}
            assert c.process.poll() is None

            # a's server-pool health pings dial b with the same outgoing credentials.
            options = [("grpc.ssl_target_name_override", SERVER_NAME)]
            with grpc.secure_channel(a.target, creds, options=options) as channel:
                pool = server_pool_pb2_grpc.ServerPoolStub(channel)
                servers = [
                    sp.Server(name="dead", address=f"127.0.0.1:{free_port()}"),
                    sp.Server(name="b", address=b.target),
                ]
                pool.RefreshServerLists(
                    sp.RefreshServerListsRequest(pool="tls", servers=servers), timeout=5
                )
                answer = pool.RebalanceServers(sp.RebalanceServersRequest(pool="tls"), timeout=10)
            assert not answer.offline
            assert answer.servers[0].address == b.target
        finally:
            b.kill()
            c.kill()


def test_sighup_reloads_the_certificate_without_dropping_a_watch(
    tmp_path: Path, pki: dict[str, Path | Pem]
) -> None:
    old_ca, pem = pki["ca"], pki["agent"]
    assert isinstance(old_ca, Path)
    assert isinstance(pem, Pem)
    # The agent's files are its own copies: the test replaces them.
    live = Pem(tmp_path / "live.pem", tmp_path / "live-key.pem")
    shutil.copy(pem.cert, live.cert)
    shutil.copy(pem.key, live.key)
    new_authority = trustme.CA()
    new_ca = write_ca(new_authority, tmp_path / "new-ca.pem")
    fresh = issue(new_authority, tmp_path, "fresh", *HOSTS)
    with tls_agent("reload-1", tmp_path, tls_args(None, live), credentials(old_ca)) as agent:
        channel = grpc.secure_channel(agent.target, credentials(old_ca))
        watch = StreamCollector(
            membership_pb2_grpc.MembershipStub(channel).WatchEvents(pb.WatchEventsRequest()),
            "reload-watch",
        )
        try:
            assert list_members(agent.target, credentials(new_ca)) == grpc.StatusCode.UNAVAILABLE
            shutil.copy(fresh.cert, live.cert)
            shutil.copy(fresh.key, live.key)
            agent.process.send_signal(signal.SIGHUP)
            assert wait_until(
                lambda: list_members(agent.target, credentials(new_ca)) == grpc.StatusCode.OK, 10
            ), agent.log()
            assert "TLS files reloaded" in agent.log()
            # New connections see the new certificate only.
            assert list_members(agent.target, credentials(old_ca)) == grpc.StatusCode.UNAVAILABLE
            # The watch opened before the reload still delivers events.
            fired = cli("event", "after-reload", "--addr", agent.target, "--ca-file", str(new_ca))
            assert fired.returncode == 0, fired.stderr

            def delivered() -> bool:
                return any(
                    isinstance(m, pb.WatchEventsResponse) and m.event.user.name == "after-reload"
                    for m in watch.snapshot()
                )

            assert wait_until(delivered, 10), (watch.error, agent.log())
            assert watch.error is None

            # A reload that fails keeps the certificate in use and says so once.
            live.cert.write_text("not a certificate\n")
            agent.process.send_signal(signal.SIGHUP)
            assert wait_until(lambda: "TLS reload failed" in agent.log(), 10), agent.log()
            failures = [line for line in agent.log().splitlines() if "TLS reload failed" in line]
            assert len(failures) == 1
            assert "tls_cert_file" in failures[0]
            assert list_members(agent.target, credentials(new_ca)) == grpc.StatusCode.OK
            assert agent.process.poll() is None
        finally:
            watch.stop()
            channel.close()


def run_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return cli("agent", "--node", "bad", "--bind", "127.0.0.1", "--port", str(free_port()), *args)


def test_bad_tls_files_stop_the_start_with_exit_2(
    tmp_path: Path, pki: dict[str, Path | Pem]
) -> None:
    ca, pem, client = pki["ca"], pki["agent"], pki["client"]
    assert isinstance(ca, Path)
    assert isinstance(pem, Pem)
    assert isinstance(client, Pem)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    cases = {
        "cannot be read": ["--tls-cert-file", str(tmp_path / "missing.pem"),
                           "--tls-key-file", str(pem.key)],
        "holds no PEM certificate": ["--tls-cert-file", str(garbage),
                                     "--tls-key-file", str(pem.key)],
        "does not match": ["--tls-cert-file", str(pem.cert), "--tls-key-file", str(client.key)],
        "no unencrypted PEM private key": ["--tls-cert-file", str(pem.cert),
                                           "--tls-key-file", str(garbage)],
        "tls_ca_file": ["--tls-ca-file", str(garbage), "--verify-outgoing"],
    }  # fmt: skip
    for expected, args in cases.items():
        result = run_agent(*args)
        assert result.returncode == 2, (expected, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert expected in lines[0], lines
        assert "BEGIN" not in lines[0]


def test_tls_settings_that_cannot_work_together_are_refused(pki: dict[str, Path | Pem]) -> None:
    pem = pki["agent"]
    assert isinstance(pem, Pem)
    cases = {
        "tls_cert_file is set but tls_key_file is not": ["--tls-cert-file", str(pem.cert)],
        "verify_incoming needs tls_cert_file": ["--verify-incoming"],
        "verify_outgoing needs tls_ca_file": ["--verify-outgoing", "true"],
    }
    for expected, args in cases.items():
        result = run_agent(*args)
        assert result.returncode == 2, (expected, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("controlplane: ")
        assert expected in lines[0], lines


def test_sighup_without_tls_changes_nothing(tmp_path: Path) -> None:
    # SIGHUP's default action ends a process: the agent handles it instead.
    with running_agent("plain-hup", log_dir=tmp_path, args=["--profile", "local"]) as agent:
        agent.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "SIGHUP: no TLS files" in agent.log(), 10), agent.log()
        assert "SIGHUP: configuration read again; nothing changed" in agent.log()
        assert agent.process.poll() is None
        assert agent.health() == HealthStatus.SERVING


def test_the_cli_refuses_unusable_files_with_exit_2(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    addr = f"127.0.0.1:{free_port()}"
    cases = {
        "--ca-file: cannot read": ["--ca-file", missing],
        "--ca-file: ": ["--ca-file", str(garbage)],
        "--cert-file is set but --key-file is not": ["--cert-file", str(garbage)],
        "--tls-server-name needs TLS": ["--tls-server-name", "server.controlplane"],
        "--token-file": ["--token-file", missing],
    }
    for expected, args in cases.items():
        result = cli("members", "--addr", addr, *args, env=NO_TLS_ENVIRONMENT)
        assert result.returncode == 2, (expected, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert expected in lines[0], lines
