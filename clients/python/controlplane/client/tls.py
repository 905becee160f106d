"""TLS to the agents: reads and checks the client's PEM files once and builds the
channel credentials every channel of the client shares.

Only the standard library checks the files (the client depends on grpcio and
protobuf alone): `ssl` parses the CA bundle and loads the certificate with its key,
which fails when they do not match. Each problem is a ValueError naming the setting
(`ClientOptions.ca_file`, or the command-line flag) and the file.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

__all__ = ["TlsFiles", "load_credentials"]

_FIELDS = {"ca_file": "ca_file", "cert_file": "cert_file", "key_file": "key_file"}


@dataclass(frozen=True)
class TlsFiles:
    """Paths of a client's PEM files; empty strings are not set."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @property
    def enabled(self) -> bool:
        """TLS is spoken when a CA or a client certificate is given."""
        return bool(self.ca_file or self.cert_file)


def _read(name: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ValueError(f"{name}: cannot read {path!r}: {error.strerror or error}") from None


def load_credentials(
    files: TlsFiles, names: Mapping[str, str] = _FIELDS
) -> grpc.ChannelCredentials | None:
    """Channel credentials for `files`, or None when TLS is off. `names` maps
    ca_file / cert_file / key_file to the names errors use."""
    if not files.enabled:
        return None
    if bool(files.cert_file) != bool(files.key_file):
        given, missing = ("cert_file", "key_file") if files.cert_file else ("key_file", "cert_file")
        raise ValueError(f"{names[given]} is set but {names[missing]} is not: give both")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca = cert = key = None
    if files.ca_file:
        ca = _read(names["ca_file"], files.ca_file)
        try:
            context.load_verify_locations(cadata=ca.decode("ascii"))
        except (ssl.SSLError, ValueError):
            raise ValueError(
                f"{names['ca_file']}: {files.ca_file!r} holds no PEM certificate"
            ) from None
    if files.cert_file:
        cert = _read(names["cert_file"], files.cert_file)
        key = _read(names["key_file"], files.key_file)
        try:
            # Parses both files and checks that the key belongs to the certificate. An
            # empty password makes an encrypted key fail instead of prompting on a tty.
            context.load_cert_chain(files.cert_file, files.key_file, password=b"")
        except ssl.SSLError as error:
            raise ValueError(
                f"{names['cert_file']} / {names['key_file']}: {files.cert_file!r} and"
                f" {files.key_file!r} are not a PEM certificate and its unencrypted key"
                f" ({error.reason or error})"
            ) from None
    # Without ca_file, gRPC verifies the agent against its bundled public roots.
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
