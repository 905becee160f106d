"""Real agent processes for integration tests and benchmarks.

Starts `controlplane agent` as a child process on a loopback address, waits until
its health check says SERVING, and stops it with SIGTERM (or SIGKILL). Every wait
is bounded by a deadline, so a broken agent fails a test instead of hanging it.

In secure mode (`secure_mode(SecureSetup.create(dir))`, or pytest's
`--secure-agents`), every agent started here runs with mTLS and a token file, and
every channel, health check and CLI call made through this module carries the
client certificate and an operator token: the same tests then prove that a
secured cluster behaves like an open one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from controlplane.client import ClientOptions
from controlplane.client.health import HealthStatus, check_health
from controlplane.v1 import membership_pb2, membership_pb2_grpc

# Loopback addresses the tests bind agents to; a secure-mode agent certificate names
# them all, so any agent's certificate is valid for any test address.
_TEST_HOSTS = ("localhost", *(f"127.0.0.{i}" for i in range(1, 33)))
# The name a server certificate carries for `verify_server_hostname` (docs/security.md).
SERVER_NAME = "server.controlplane"


@dataclass(frozen=True)
class SecureSetup:
    """A throwaway CA, an agent certificate, a client certificate and a token file."""

    directory: Path
    operator_token: str
    read_token: str

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def agent_cert_file(self) -> Path:
        return self.directory / "agent.pem"

    @property
    def agent_key_file(self) -> Path:
        return self.directory / "agent-key.pem"

    @property
    def client_cert_file(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key_file(self) -> Path:
        return self.directory / "client-key.pem"

    @property
    def tokens_file(self) -> Path:
        return self.directory / "tokens.toml"

    @classmethod
    def create(cls, directory: Path) -> SecureSetup:
        # trustme is a development dependency: imported only when certificates are made.
        import secrets

        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        setup = cls(directory, secrets.token_hex(16), secrets.token_hex(16))
        authority = trustme.CA()
        authority.cert_pem.write_to_path(str(setup.ca_file))
        agent = authority.issue_cert(*_TEST_HOSTS, SERVER_NAME)
        agent.cert_chain_pems[0].write_to_path(str(setup.agent_cert_file))
        agent.private_key_pem.write_to_path(str(setup.agent_key_file))
        client = authority.issue_cert("client.controlplane")
        client.cert_chain_pems[0].write_to_path(str(setup.client_cert_file))
        client.private_key_pem.write_to_path(str(setup.client_key_file))
        setup.tokens_file.write_text(
            "[[token]]\n"
            'name = "tests-operator"\n'
            f'secret = "{setup.operator_token}"\n'
            'scopes = ["operator"]\n'
            "\n[[token]]\n"
            'name = "tests-read"\n'
            f'secret = "{setup.read_token}"\n'
            'scopes = ["read"]\n'
        )
        setup.tokens_file.chmod(0o600)
        return setup

    def agent_args(self) -> list[str]:
        return [
            "--tls-ca-file",
            str(self.ca_file),
            "--tls-cert-file",
            str(self.agent_cert_file),
            "--tls-key-file",
            str(self.agent_key_file),
            "--verify-incoming",
            "--verify-outgoing",
            "--api-tokens-file",
            str(self.tokens_file),
        ]

    def cli_environment(self) -> dict[str, str]:
        return {
            "CONTROLPLANE_CACERT": str(self.ca_file),
            "CONTROLPLANE_CLIENT_CERT": str(self.client_cert_file),
            "CONTROLPLANE_CLIENT_KEY": str(self.client_key_file),
            "CONTROLPLANE_TOKEN": self.operator_token,
        }

    def channel_credentials(self, token: str | None = None) -> grpc.ChannelCredentials:
        """mTLS with the client certificate, plus `token` (default: operator) per call."""
        transport = grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes(),
            private_key=self.client_key_file.read_bytes(),
            certificate_chain=self.client_cert_file.read_bytes(),
        )
        bearer = grpc.access_token_call_credentials(token or self.operator_token)
        return grpc.composite_channel_credentials(transport, bearer)


_secure: SecureSetup | None = None


def secure_mode(setup: SecureSetup | None) -> None:
    """Makes agents started from now on (and their channels and CLI calls) secure."""
    global _secure
    _secure = setup


def current_secure_setup() -> SecureSetup | None:
    return _secure


def with_credentials(options: ClientOptions) -> ClientOptions:
    """`options` plus, in secure mode, the client certificate and an operator token."""
    if _secure is None:
        return options
    return dataclasses.replace(
        options,
        ca_file=str(_secure.ca_file),
        cert_file=str(_secure.client_cert_file),
        key_file=str(_secure.client_key_file),
        token=_secure.operator_token,
    )


def open_channel(target: str, secure: SecureSetup | None = None) -> grpc.Channel:
    """A blocking channel to `target`, with mTLS and a token in secure mode."""
    setup = secure or _secure
    if setup is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, setup.channel_credentials())


def _free_on(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


def clean_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without CONTROLPLANE_* settings, plus `extra`: a
    child must not pick up the developer's agent address, token or settings. Strict
    mode (CONTROLPLANE_STRICT, set for every test run by tests/conftest.py) passes
    through, so a bug inside an agent's core raises there. In secure mode the
    command-line tools' TLS files and token are set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CONTROLPLANE_") or k == "CONTROLPLANE_STRICT"
    }
    if _secure is not None:
        env.update(_secure.cli_environment())
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Runs `controlplane ARGS...` to completion and captures its output."""
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_environment(env),
        check=False,
    )


def free_port(host: str = "127.0.0.1", *also_free_on: str) -> int:
    """A port free for both TCP and UDP on `host` (and every `also_free_on`) right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
        if all(_free_on(h, port) for h in (host, *also_free_on)):
            return port
    raise RuntimeError(f"no port free for TCP and UDP on {host} {also_free_on}")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Polls `predicate` until it holds or `timeout` seconds pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class StreamCollector:
    """Reads a server stream on a thread and keeps every message, until stopped."""

    def __init__(self, call: grpc.Call, name: str) -> None:
        self._call = call
        self.messages: list[object] = []
        self.error: grpc.RpcError | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for message in self._call:  # type: ignore[attr-defined]
                with self._lock:
                    self.messages.append(message)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.error = error

    def snapshot(self) -> list[object]:
        with self._lock:
            return list(self.messages)

    def stop(self) -> None:
        self._call.cancel()
        self._thread.join(timeout=5)


@dataclass
class AgentProcess:
    """A running agent child process and how to reach it."""

    name: str
    host: str
    port: int
    process: subprocess.Popen[str]
    log_path: Path
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    secure: SecureSetup | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def members(self, timeout: float = 2.0) -> dict[str, str]:
        """Member name -> status name (ALIVE, FAILED, LEFT...) as this agent sees it."""
        with self.channel() as channel:
            stub = membership_pb2_grpc.MembershipStub(channel)
            response = stub.ListMembers(membership_pb2.ListMembersRequest(), timeout=timeout)
        return {
            m.name: membership_pb2.MemberStatus.Name(m.status).removeprefix("MEMBER_STATUS_")
            for m in response.members
        }

    def channel(self) -> grpc.Channel:
        return open_channel(self.target, self.secure)

    def leader(self, timeout: float = 2.0) -> tuple[str, int] | None:
        """(name, epoch) of the leader this agent reports; None without one or no answer."""
        try:
            with self.channel() as channel:
                answer = membership_pb2_grpc.MembershipStub(channel).GetLeader(
                    membership_pb2.GetLeaderRequest(), timeout=timeout
                )
        except grpc.RpcError:
            return None
        return (answer.leader.name, answer.leader.epoch) if answer.HasField("leader") else None

    def watch(self, method: str, request: object) -> StreamCollector:
        """Starts a Membership.Watch* stream (e.g. "WatchEvents") collected on a thread."""
        channel = self.channel()
        stub = membership_pb2_grpc.MembershipStub(channel)
        call = getattr(stub, method)(request)
        return StreamCollector(call, f"{self.name}-{method}")

    def health(self, service: str = "", timeout: float = 1.0) -> HealthStatus:
        with self.channel() as channel:
            return check_health(channel, service, timeout=timeout)

    def wait_serving(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"agent {self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(grpc.RpcError):
                if self.health(timeout=0.5) == HealthStatus.SERVING:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"agent {self.name} not serving after {timeout}s:\n{self.log()}")

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_agent(
    name: str,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    args: Sequence[str] = (),
    log_dir: Path,
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> AgentProcess:
    """Starts an agent process; with `wait`, returns once it is SERVING."""
    port = port or free_port(host)
    log_path = log_dir / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "controlplane.cli",
        "agent",
        "--node",
        name,
        "--bind",
        host,
        "--port",
        str(port),
        "--shutdown-grace",
        "1",
        *(_secure.agent_args() if _secure is not None else ()),
        *args,
    ]
    child_env = clean_environment(env)
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, text=True, env=child_env
        )
    agent = AgentProcess(name, host, port, process, log_path, tuple(args), _secure)
    if wait:
        try:
            agent.wait_serving()
        except BaseException:
            agent.kill()
            raise
    return agent


@contextlib.contextmanager
def running_agent(
    name: str, *, log_dir: Path, host: str = "127.0.0.1", args: Sequence[str] = ()
) -> Iterator[AgentProcess]:
    """An agent for the duration of a `with` block; killed at the end whatever happens."""
    agent = start_agent(name, log_dir=log_dir, host=host, args=args)
    try:
        yield agent
    finally:
        agent.kill()
