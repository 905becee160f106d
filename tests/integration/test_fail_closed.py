"""Fail closed: damaged state files, tokens without gossip protection, and full disks.

Issue 13, attacks 6, 7 and the disk half of 8, each against a real agent process:
a keyring, snapshot or registrations file that cannot be used stops the start
with exit 2 and one line; an agent with API tokens but an open push-pull service
does not start; a write that fails fails the RPC that needed it, the agent keeps
what a restart would read, and SIGTERM still exits 0.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import grpc
import pytest

from controlplane.client.health import HealthStatus
from controlplane.gossip.codec import PROTOCOL_VERSION, frame_header
from controlplane.testing.agents import (
    AgentProcess,
    current_secure_setup,
    free_port,
    start_agent,
    wait_until,
)
from controlplane.v1 import (
    keyring_pb2,
    keyring_pb2_grpc,
    membership_pb2,
    membership_pb2_grpc,
    ring_pb2,
    ring_pb2_grpc,
)
from controlplane.wire.v1 import gossip_pb2, gossip_pb2_grpc
from tests.ci import in_ci

pytestmark = pytest.mark.integration

OLD = bytes(range(32))
NEW = bytes(range(100, 132))
TOKEN = "fail-closed-token-1"
# Agents that start and stop quickly: local timings, no drain before leaving.
QUICK = ["--profile", "local", "--drain-period", "0"]


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture
def plain_agents() -> None:
    """Skips in secure mode (--secure-agents), where every agent has mTLS and tokens:
    the test is about agents without them, or binds 0.0.0.0, an address the test
    certificates do not name."""
    if current_secure_setup() is not None:
        pytest.skip("about agents without mTLS")


without_mtls = pytest.mark.usefixtures("plain_agents")


def start_refused(tmp_path: Path, name: str, *args: str) -> tuple[int, str]:
    """Starts an agent that must not start; its exit status and its whole output."""
    agent = start_agent(name, args=["--profile", "local", *args], log_dir=tmp_path, wait=False)
    try:
        status = agent.process.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the agent started, and should not have:\n{agent.log()}")
    finally:
        agent.kill()
    return status, agent.log()


def assert_refused(status: int, output: str, *needles: str) -> str:
    """Exit 2 and exactly one line, naming what is wrong."""
    assert status == 2, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("controlplane: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m") -> Iterator[Path]:
    """A tiny tmpfs mounted at `path` (root only), always unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs to simulate a full disk: {mounted.stderr.strip()}"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` read-only for files opened from now on: a read-only bind mount over
    itself (files a running agent holds open stay writable, which a remount of the
    whole file system would not allow)."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        remount(path, "bind,ro")
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def fill(disk: Path) -> Path:
    """Fills `disk` until not one more byte fits; returns the filler file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for chunk in (64 * 1024, 4096, 512, 1):
            assert write_until_error(handle, b"\0" * chunk) == errno.ENOSPC
    return filler


def write_until_error(handle: BinaryIO, data: bytes) -> int | None:
    try:
        while True:
            handle.write(data)
    except OSError as error:
        return error.errno


# ------------------------------------------------------------------- attack 6


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00\xff\xfe not json at all", "is not a JSON list of base64 keys"),
        (b'["' + b64(OLD).encode(), "is not a JSON list of base64 keys"),
        (b'{"keys": []}', "is not a JSON list of base64 keys"),
        (b"[]", "holds no keys"),
        (json.dumps(["not base64!"]).encode(), "key 1 is not valid base64"),
        (json.dumps([b64(NEW), b64(b"short")]).encode(), "key 2 is 5 bytes"),
    ],
    ids=["binary", "truncated", "object", "empty", "bad-base64", "bad-size"],
)
def test_a_damaged_keyring_file_stops_the_start(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    data = tmp_path / "data"
    keyring_file = data / "serf" / "local.keyring"
    keyring_file.parent.mkdir(parents=True)
    keyring_file.write_bytes(content)

    # --encrypt is given: before, the agent fell back to it, or to no encryption.
    status, output = start_refused(tmp_path, "k", "--encrypt", b64(OLD), "--data-dir", str(data))

    assert_refused(status, output, f"keyring file '{keyring_file}'", problem)
    assert keyring_file.read_bytes() == content  # never written over unread


def test_an_unreadable_keyring_file_stops_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    keyring_file = data / "serf" / "local.keyring"
    keyring_file.mkdir(parents=True)  # a directory: read fails (root ignores chmod)

    status, output = start_refused(tmp_path, "k", "--data-dir", str(data))

    assert_refused(status, output, f"keyring file '{keyring_file}'", "cannot be read")


def test_the_keyring_file_wins_over_encrypt_with_one_warning(tmp_path: Path) -> None:
    """Keys rotated to NEW (OLD still installed): an agent restarted with the old
    --encrypt OLD uses the file, so a member that only knows NEW can join it."""
    data = tmp_path / "data"
    keyring_file = data / "serf" / "local.keyring"
    keyring_file.parent.mkdir(parents=True)
    rotated = json.dumps([b64(NEW), b64(OLD)])
    keyring_file.write_text(rotated)
    hosts = ("127.0.0.1", "127.0.0.2")
    port = free_port(*hosts)
    first = start_agent(
        "k-1",
        host=hosts[0],
        port=port,
        args=[*QUICK, "--encrypt", b64(OLD), "--data-dir", str(data)],
        log_dir=tmp_path,
    )
    try:
        second = start_agent(
            "k-2",
            host=hosts[1],
            port=port,
            args=[*QUICK, "--encrypt", b64(NEW), "--join", f"{hosts[0]}:{port}"],
            log_dir=tmp_path,
        )
        try:
            assert wait_until(lambda: len(first.members()) == 2, timeout=20), first.log()
        finally:
            second.kill()
        assert first.log().count("--encrypt is ignored") == 1, first.log()
        assert str(keyring_file) in first.log()
        assert first.terminate() == 0
    finally:
        first.kill()
    assert json.loads(keyring_file.read_text()) == json.loads(rotated)


def test_a_data_dir_that_is_a_file_stops_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a directory")

    status, output = start_refused(tmp_path, "d", "--data-dir", str(data))

    assert_refused(status, output, f"data directory '{data}'", "not a directory")


def test_a_read_only_data_dir_stops_the_start(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        (disk / "data").mkdir()
        remount(disk, "ro")
        status, output = start_refused(tmp_path, "d", "--data-dir", str(disk / "data"))

    assert_refused(status, output, "data directory", "Read-only file system")


# ------------------------------------------------------------------- attack 7


@without_mtls
@pytest.mark.parametrize("token_flag", ["--api-token", "--api-tokens-file"])
def test_tokens_without_encryption_or_mtls_refuse_to_start(tmp_path: Path, token_flag: str) -> None:
    value = TOKEN
    if token_flag == "--api-tokens-file":
        tokens = tmp_path / "tokens.toml"
        tokens.write_text(f'[[token]]\nname = "ops"\nsecret = "{TOKEN}"\nscopes = ["operator"]\n')
        tokens.chmod(0o600)
        value = str(tokens)

    status, output = start_refused(tmp_path, "t", token_flag, value)

    line = assert_refused(status, output, "public API only", "push-pull", "--encrypt")
    assert "verify_incoming" in line
    assert TOKEN not in line


@without_mtls
def test_with_a_token_and_encryption_an_anonymous_push_pull_is_refused(tmp_path: Path) -> None:
    """The bypass itself: an unencrypted push-pull carrying a forged member, sent
    without a token, reads nothing and injects nothing."""
    agent = start_agent(
        "victim",
        args=[
            "--profile",
            "local",
            "--drain-period",
            "0",
            "--api-token",
            TOKEN,
            "--encrypt",
            b64(OLD),
        ],
        log_dir=tmp_path,
    )
    try:
        forged = gossip_pb2.PushPullState(
            protocol_version=PROTOCOL_VERSION,
            join=True,
            members=[
                gossip_pb2.MemberState(
                    name="intruder",
                    address=gossip_pb2.Address(host="127.0.0.9", port=7946),
                    incarnation=1,
                    status=gossip_pb2.MEMBER_STATUS_ALIVE,
                )
            ],
        )
        frame = frame_header("", encrypted=False) + forged.SerializeToString()
        with agent.channel() as channel:
            with pytest.raises(grpc.RpcError) as denied:
                gossip_pb2_grpc.GossipStub(channel).PushPull(
                    gossip_pb2.PushPullRequest(frame=frame), timeout=5
                )
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            members = membership_pb2_grpc.MembershipStub(channel).ListMembers(
                membership_pb2.ListMembersRequest(),
                timeout=5,
                metadata=(("authorization", f"Bearer {TOKEN}"),),
            )
        assert [m.name for m in members.members] == ["victim"]
        assert agent.terminate() == 0
    finally:
        agent.kill()


@without_mtls
def test_an_open_cluster_is_warned_about_once(tmp_path: Path) -> None:
    agent = start_agent("open", host="0.0.0.0", args=QUICK, log_dir=tmp_path)
    try:
        assert agent.terminate() == 0
    finally:
        agent.kill()
    assert agent.log().count("gossip is not encrypted") == 1, agent.log()
    assert "--encrypt" in agent.log()


@without_mtls
def test_an_encrypted_or_loopback_agent_is_not_warned_about(tmp_path: Path) -> None:
    encrypted = start_agent(
        "sealed",
        host="0.0.0.0",
        args=[*QUICK, "--encrypt", b64(OLD)],
        log_dir=tmp_path,
    )
    loopback = start_agent("local", args=QUICK, log_dir=tmp_path)
    try:
        assert encrypted.terminate() == 0
        assert loopback.terminate() == 0
    finally:
        encrypted.kill()
        loopback.kill()
    assert "gossip is not encrypted" not in encrypted.log()
    assert "gossip is not encrypted" not in loopback.log()


# --------------------------------------------------- files read at start


def test_a_damaged_registrations_file_stops_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    state = data / "rings.state"
    state.write_bytes(b"\xff" * 64 + b"not a ring state")

    status, output = start_refused(tmp_path, "r", "--data-dir", str(data))

    assert_refused(status, output, f"'{state}'", "damaged", "move it aside")
    assert state.read_bytes() == b"\xff" * 64 + b"not a ring state"


def test_an_unreadable_snapshot_stops_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    snapshot = data / "serf" / "local.snapshot"
    snapshot.mkdir(parents=True)

    status, output = start_refused(tmp_path, "s", "--data-dir", str(data))

    assert_refused(status, output, f"snapshot '{snapshot}'", "cannot be read")


def test_a_damaged_snapshot_is_replayed_as_far_as_it_reads(tmp_path: Path) -> None:
    """Serf's replay: bad records are skipped with a warning; the log stays bounded."""
    data = tmp_path / "data"
    snapshot = data / "serf" / "local.snapshot"
    snapshot.parent.mkdir(parents=True)
    garbage = b"\x00\xff\xfebinary\n" * 2000 + b"alive: x\n" * 2000
    snapshot.write_bytes(garbage + b"A" * (8 << 20))  # and one huge unterminated line

    agent = start_agent(
        "s",
        args=[*QUICK, "--data-dir", str(data)],
        log_dir=tmp_path,
    )
    try:
        assert agent.members() == {"s": "ALIVE"}
        assert agent.terminate() == 0
    finally:
        agent.kill()
    log = agent.log()
    assert "Traceback" not in log
    assert "is damaged (4001 bad records" in log, log
    assert log.count(f"snapshot {snapshot}:") <= 10
    assert "gossip is not encrypted" not in log  # loopback: no warning


# ------------------------------------------------------------- attack 8, disk


def add_node(agent: AgentProcess, address: str) -> None:
    with agent.channel() as channel:
        ring_pb2_grpc.RingStub(channel).AddNode(
            ring_pb2.AddNodeRequest(ring="cache", address=address, port=11211), timeout=5
        )


def ring_nodes(agent: AgentProcess) -> list[str]:
    with agent.channel() as channel:
        response = ring_pb2_grpc.RingStub(channel).ListNodes(
            ring_pb2.ListNodesRequest(ring="cache"), timeout=5
        )
    return [node.id for node in response.nodes]


def installed_keys(agent: AgentProcess) -> int:
    with agent.channel() as channel:
        response = keyring_pb2_grpc.KeyringStub(channel).ListKeys(
            keyring_pb2.ListKeysRequest(), timeout=10
        )
    return len(response.keys)


def refused(call: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    assert isinstance(call, grpc.Call)
    return call.code(), call.details() or ""


def test_a_full_or_read_only_disk_fails_the_rpc_and_shutdown_stays_clean(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        data = disk / "data"
        args = [*QUICK, "--encrypt", b64(OLD)]
        args += ["--data-dir", str(data)]
        agent = start_agent("full", args=args, log_dir=tmp_path)
        try:
            add_node(agent, "10.0.0.1")
            filler = fill(disk)

            with agent.channel() as channel:
                with pytest.raises(grpc.RpcError) as add:
                    ring_pb2_grpc.RingStub(channel).AddNode(
                        ring_pb2.AddNodeRequest(ring="cache", address="10.0.0.2", port=11211),
                        timeout=5,
                    )
                with pytest.raises(grpc.RpcError) as install:
                    keyring_pb2_grpc.KeyringStub(channel).InstallKey(
                        keyring_pb2.InstallKeyRequest(key=NEW), timeout=10
                    )
            code, details = refused(add.value)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
            assert "node 10.0.0.2:11211 of ring 'cache' was not stored" in details
            assert "rings.state" in details
            assert "No space left on device" in details
            code, details = refused(install.value)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
            assert "the key was not installed" in details
            assert "local.keyring" in details
            # What the agent answers is what it would read after a restart.
            assert ring_nodes(agent) == ["10.0.0.1:11211"]
            assert installed_keys(agent) == 1
            assert agent.health() == HealthStatus.SERVING

            # Shutdown writes the snapshot's leave, which fails too: logged, exit 0.
            assert agent.terminate() == 0
        finally:
            agent.kill()
        log = agent.log()
        assert "Traceback" not in log, log
        assert "cannot write snapshot" in log
        assert log.count("cannot write snapshot") <= 2, log

        filler.unlink()
        (tmp_path / "read-only").mkdir()
        agent = start_agent("full", args=args, log_dir=tmp_path / "read-only")
        try:
            with read_only(data):
                with agent.channel() as channel, pytest.raises(grpc.RpcError) as remove:
                    ring_pb2_grpc.RingStub(channel).RemoveNode(
                        ring_pb2.RemoveNodeRequest(ring="cache", id="10.0.0.1:11211"), timeout=5
                    )
                code, details = refused(remove.value)
                assert code == grpc.StatusCode.UNAVAILABLE, details
                assert (
                    "the removal of node 10.0.0.1:11211 from ring 'cache' was not stored" in details
                )
                assert "Read-only file system" in details
                assert ring_nodes(agent) == ["10.0.0.1:11211"]
                assert agent.terminate() == 0
        finally:
            agent.kill()
        assert "Traceback" not in agent.log(), agent.log()

        (tmp_path / "restart").mkdir()
        restarted = start_agent("full", args=args, log_dir=tmp_path / "restart")
        try:
            assert ring_nodes(restarted) == ["10.0.0.1:11211"]
            assert installed_keys(restarted) == 1
        finally:
            restarted.kill()
