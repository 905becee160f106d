"""The agent's TLS files and settings: combinations refused by the configuration,
files checked at start, reloads that keep the old files on a problem, and the
server name that verify_server_hostname makes the dialler expect."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import grpc.aio
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health, health_pb2_grpc

from controlplane.client.health import HealthStatus, check_health_async
from controlplane.config import build_config
from controlplane.configerror import ConfigError
from controlplane.shell.attend import AttendServer
from controlplane.shell.pushpull import GossipServicer, PushPullClient
from controlplane.shell.tls import AgentTls, load_material
from controlplane.wire.v1 import gossip_pb2_grpc


def write(ca: trustme.CA, directory: Path, stem: str, *names: str) -> tuple[str, str]:
    issued = ca.issue_cert(*names)
    cert, key = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"tls_cert_file": "c.pem"}, "tls_cert_file is set but tls_key_file is not"),
        ({"tls_key_file": "k.pem"}, "tls_key_file is set but tls_cert_file is not"),
        ({"verify_incoming": "true"}, "verify_incoming needs tls_cert_file"),
        (
            {"verify_incoming": "true", "tls_cert_file": "c", "tls_key_file": "k"},
            "verify_incoming needs tls_ca_file",
        ),
        ({"verify_outgoing": "true"}, "verify_outgoing needs tls_ca_file"),
        ({"verify_server_hostname": "yes"}, "verify_server_hostname needs tls_ca_file"),
        (
            {"verify_server_hostname": "true", "tls_ca_file": "ca", "cluster_label": "a b"},
            "not a DNS name",
        ),
    ],
)
def test_settings_that_cannot_work_together_are_refused(
    flags: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        build_config(flags=flags)
    assert "\n" not in str(raised.value)


def test_consistent_settings_are_accepted() -> None:
    config = build_config(
        flags={
            "tls_ca_file": "ca.pem",
            "tls_cert_file": "c.pem",
            "tls_key_file": "k.pem",
            "verify_incoming": "true",
            "verify_outgoing": "true",
            "verify_server_hostname": "true",
            "cluster_label": "prod.east",
        }
    )
    assert config.verify_incoming
    assert config.verify_server_hostname
    # A CA alone (for outgoing TLS only) is fine; so is TLS without client certificates.
    build_config(flags={"tls_ca_file": "ca.pem", "verify_outgoing": "true"})
    build_config(flags={"tls_cert_file": "c.pem", "tls_key_file": "k.pem"})


def test_files_are_checked(tmp_path: Path) -> None:
    ca, other = trustme.CA(), trustme.CA()
    cert, key = write(ca, tmp_path, "a", "127.0.0.1")
    _, other_key = write(other, tmp_path, "b", "127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    material = load_material(str(ca_file), cert, key)
    assert material.cert is not None
    assert material.ca == ca_file.read_bytes()

    with pytest.raises(ConfigError, match="does not match"):
        load_material("", cert, other_key)
    with pytest.raises(ConfigError, match=r"tls_cert_file .* holds no PEM certificate"):
        load_material("", key, key)
    with pytest.raises(ConfigError, match=r"tls_key_file .* no unencrypted PEM private key"):
        load_material("", cert, cert)
    with pytest.raises(ConfigError, match=r"tls_ca_file .* cannot be read"):
        load_material(str(tmp_path / "missing.pem"), cert, key)
    encrypted = tmp_path / "encrypted-key.pem"
    private = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(ConfigError, match="no unencrypted PEM private key") as raised:
        load_material("", cert, str(encrypted))
    # Messages name files, never their contents.
    assert "BEGIN" not in str(raised.value)


def test_a_failed_reload_keeps_the_files_in_use(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = write(ca, tmp_path, "a", "127.0.0.1")
    config = build_config(flags={"tls_cert_file": cert, "tls_key_file": key})
    tls = AgentTls.from_config(config)
    assert tls.serving
    assert tls.outgoing is None
    assert not tls.outgoing_tls
    Path(cert).write_text("garbage\n")
    assert not tls.reload()
    # Nothing handed to gRPC: the next handshake keeps the certificate in use.
    assert tls._fetch() is None
    write(ca, tmp_path, "a", "127.0.0.1")
    assert tls.reload()
    assert tls._fetch() is not None
    # Handed over once: later handshakes keep it without rebuilding it.
    assert tls._fetch() is None


async def _serve(tls: AgentTls) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", tls.server_credentials())
    await server.start()
    return server, port


async def _ping(tls: AgentTls, port: int) -> bool:
    assert tls.outgoing is not None
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{port}", tls.outgoing, options=tls.channel_options()
    ) as channel:
        try:
            return await check_health_async(channel, timeout=2) == HealthStatus.SERVING
        except grpc.aio.AioRpcError:
            return False


def test_verify_server_hostname_refuses_a_peer_without_the_server_name(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_cert = write(ca, tmp_path, "server", "server.blue")
    # Signed by the same CA and valid for the address dialled, but not a server's.
    client_cert = write(ca, tmp_path, "client", "127.0.0.1", "client.blue")

    def agent_tls(files: tuple[str, str], *, names: bool) -> AgentTls:
        flags: dict[str, object] = {
            "tls_ca_file": str(ca_file),
            "tls_cert_file": files[0],
            "tls_key_file": files[1],
            "verify_incoming": "true",
            "verify_outgoing": "true",
            "cluster_label": "blue",
        }
        if names:
            flags["verify_server_hostname"] = "true"
        return AgentTls.from_config(build_config(flags=flags))

    async def scenario() -> tuple[bool, bool, bool]:
        dialler = agent_tls(server_cert, names=True)
        assert dialler.channel_options() == (("grpc.ssl_target_name_override", "server.blue"),)
        real, real_port = await _serve(agent_tls(server_cert, names=True))
        fake, fake_port = await _serve(agent_tls(client_cert, names=False))
        try:
            without_rule = agent_tls(server_cert, names=False)
            return (
                await _ping(dialler, real_port),
                await _ping(dialler, fake_port),
                await _ping(without_rule, fake_port),
            )
        finally:
            await real.stop(None)
            await fake.stop(None)

    to_real, to_fake, to_fake_without_rule = asyncio.run(scenario())
    assert to_real
    assert not to_fake
    # Without the rule, a certificate of the CA naming the address passes.
    assert to_fake_without_rule


def test_push_pull_dials_with_credentials_set_after_a_reload(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_files = write(ca, tmp_path, "server", "127.0.0.1")
    config = build_config(
        flags={
            "tls_ca_file": str(ca_file),
            "tls_cert_file": server_files[0],
            "tls_key_file": server_files[1],
            "verify_incoming": "true",
            "verify_outgoing": "true",
        }
    )
    tls = AgentTls.from_config(config)

    async def echo(_source: tuple[str, int], frame: bytes) -> bytes:
        return frame[::-1]

    async def scenario() -> list[bytes | None]:
        server = grpc.aio.server()
        gossip_pb2_grpc.add_GossipServicer_to_server(
            GossipServicer(echo, AttendServer(lambda name: False)), server
        )
        port = server.add_secure_port("127.0.0.1:0", tls.server_credentials())
        await server.start()
        dest = ("127.0.0.1", port)
        # Plaintext to a TLS port fails; the agent's outgoing credentials work.
        client = PushPullClient()
        answers = [await client.exchange(dest, b"ab", timeout=2)]
        client.set_credentials(tls.outgoing)
        answers.append(await client.exchange(dest, b"ab", timeout=2))
        first = client._channels[dest]
        # A reload hands new credentials: the cached channel is replaced, not reused.
        assert tls.reload()
        client.set_credentials(tls.outgoing)
        answers.append(await client.exchange(dest, b"cd", timeout=2))
        assert client._channels[dest] is not first
        await client.close()
        await server.stop(None)
        return answers

    assert asyncio.run(scenario()) == [None, b"ba", b"dc"]
