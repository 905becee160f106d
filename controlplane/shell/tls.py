"""TLS on the agent's gRPC port: the PEM files, the server credentials and the
credentials of the agent's own calls to its peers.

The agent reads and checks its files once at start (`load_material`); a bad file is
`ConfigError`, one line naming the setting and the file. `AgentTls` then owns:

- the server credentials, built with `grpc.dynamic_ssl_server_credentials`: gRPC
  asks for the certificate at every new handshake, so `reload()` (SIGHUP) changes
  the certificate, key and CA of new connections while open ones keep theirs. A
  reload that fails keeps the current files' contents;
- the outgoing credentials (push-pull, server-pool health pings). They are TLS
  exactly when `verify_outgoing` (or `verify_server_hostname`, which implies it, as
  in Consul) is set: peers are verified against `tls_ca_file` and this agent's own
  certificate is presented as its client certificate, which peers started with
  `verify_incoming` require. Otherwise outgoing calls are plaintext.

gRPC always checks the name dialled against the peer's certificate. Peers are
dialled by address, so without `verify_server_hostname` a peer's certificate must
name its IP address (any certificate of the CA naming it passes). With it, every
peer is dialled expecting `tls_server_name(cluster_label)` (`server.<label>`,
`server.controlplane` without a label), so a certificate issued to a
client by the same CA cannot pose as a server (Consul's `server.<dc>.<domain>` rule).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from controlplane.config import AgentConfig, tls_server_name
from controlplane.configerror import ConfigError

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger("controlplane.tls")


@dataclass(frozen=True)
class TlsMaterial:
    """The PEM bytes of one consistent reading of the files (never logged)."""

    ca: bytes | None
    cert: bytes | None
    key: bytes | None


def _read(setting: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ConfigError(f"{setting} {path!r} cannot be read: {error.strerror or error}") from None


def _certificates(setting: str, path: str, data: bytes) -> list[x509.Certificate]:
    # cryptography costs megabytes of memory: loaded only when TLS files are given.
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise ConfigError(f"{setting} {path!r} holds no PEM certificate")
    return certificates


def load_material(ca_file: str, cert_file: str, key_file: str) -> TlsMaterial:
    """Reads and checks the files; raises ConfigError (one line) on the first problem."""
    ca = cert = key = None
    if ca_file:
        ca = _read("tls_ca_file", ca_file)
        _certificates("tls_ca_file", ca_file, ca)
    if cert_file and key_file:
        cert = _read("tls_cert_file", cert_file)
        key = _read("tls_key_file", key_file)
        leaf = _certificates("tls_cert_file", cert_file, cert)[0]
        from cryptography.hazmat.primitives import serialization

        try:
            private = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError):
            # TypeError: the key is encrypted; the agent cannot prompt for a password.
            raise ConfigError(
                f"tls_key_file {key_file!r} holds no unencrypted PEM private key"
            ) from None
        if private.public_key() != leaf.public_key():
            raise ConfigError(
                f"tls_key_file {key_file!r} does not match the certificate in"
                f" tls_cert_file {cert_file!r}"
            )
    return TlsMaterial(ca, cert, key)


def _server_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    assert material.cert is not None
    assert material.key is not None
    return grpc.ssl_server_certificate_configuration(
        [(material.key, material.cert)], root_certificates=material.ca
    )


class AgentTls:
    """The agent's TLS state: files as last loaded, server and outgoing credentials."""

    def __init__(self, config: AgentConfig, material: TlsMaterial) -> None:
        self._files = (config.tls_ca_file, config.tls_cert_file, config.tls_key_file)
        self.serving = material.cert is not None
        self.require_client_certificates = config.verify_incoming
        # verify_server_hostname checks outgoing connections, so it implies TLS on them.
        self.outgoing_tls = config.verify_outgoing or config.verify_server_hostname
        self.expected_server_name = (
            tls_server_name(config.cluster_label) if config.verify_server_hostname else None
        )
        self._material = material
        # gRPC calls the fetcher from its own threads at each new handshake.
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._outgoing = self._outgoing_credentials(material)

    @classmethod
    def from_config(cls, config: AgentConfig) -> AgentTls:
        """Raises ConfigError when a configured file is not usable."""
        return cls(
            config,
            load_material(config.tls_ca_file, config.tls_cert_file, config.tls_key_file),
        )

    def summary(self) -> str:
        """One line for the start log: what is on, never any key material."""
        if not self.serving:
            incoming = "TLS off on the gRPC port (plaintext)"
        elif self.require_client_certificates:
            incoming = "TLS on the gRPC port, client certificates required (verify_incoming)"
        else:
            incoming = "TLS on the gRPC port, client certificates not required"
        if not self.outgoing_tls:
            outgoing = "calls to peers in plaintext"
        elif self.expected_server_name is not None:
            outgoing = f"calls to peers over TLS, expecting {self.expected_server_name!r}"
        else:
            outgoing = "calls to peers over TLS, expecting their address in their certificate"
        return f"{incoming}; {outgoing}"

    def server_credentials(self) -> grpc.ServerCredentials:
        assert self.serving, "no tls_cert_file: the port is plaintext"
        return grpc.dynamic_ssl_server_credentials(
            _server_configuration(self._material),
            # gRPC documents None as "keep the current one"; the stubs do not say so.
            self._fetch,  # type: ignore[arg-type]
            require_client_authentication=self.require_client_certificates,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # None keeps the configuration in use; a reload is handed over once.
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def _outgoing_credentials(self, material: TlsMaterial) -> grpc.ChannelCredentials | None:
        if not self.outgoing_tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=material.ca,
            private_key=material.key,
            certificate_chain=material.cert,
        )

    @property
    def outgoing(self) -> grpc.ChannelCredentials | None:
        """Credentials of the agent's calls to peers; None means plaintext."""
        return self._outgoing

    def channel_options(self) -> Sequence[tuple[str, str]]:
        """Options that make outgoing channels expect the server name, when set."""
        if self.expected_server_name is None:
            return ()
        return (("grpc.ssl_target_name_override", self.expected_server_name),)

    def reload(self) -> bool:
        """Reads the files again; new handshakes (in and out) use them. On a problem,
        logs one error line, keeps the current ones and returns False."""
        try:
            material = load_material(*self._files)
        except ConfigError as error:
            log.error("TLS reload failed, the current certificate stays in use: %s", error)
            return False
        self._material = material
        self._outgoing = self._outgoing_credentials(material)
        if self.serving:
            with self._lock:
                self._pending = _server_configuration(material)
        log.info("TLS files reloaded: new connections use them, open connections keep theirs")
        return True
