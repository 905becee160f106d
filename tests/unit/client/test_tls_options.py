"""The client's TLS fields: combinations checked by ClientOptions, files read once
when a client is created, each problem a ValueError naming the field; the CLI's
token file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import trustme

from controlplane.cli import UsageError, _token
from controlplane.client import Client, ClientOptions


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    mine, theirs = ca.issue_cert("client.controlplane"), other.issue_cert("x")
    mine.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    mine.private_key_pem.write_to_path(str(tmp_path / "client-key.pem"))
    theirs.private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))
    (tmp_path / "garbage.pem").write_text("hello\n")
    return {p.stem: str(p) for p in tmp_path.iterdir()}


def test_combinations_are_checked_when_options_are_made() -> None:
    with pytest.raises(ValueError, match="cert_file is set but key_file is not"):
        ClientOptions(cert_file="c.pem")
    with pytest.raises(ValueError, match="key_file is set but cert_file is not"):
        ClientOptions(key_file="k.pem")
    with pytest.raises(ValueError, match="tls_server_name needs TLS"):
        ClientOptions(tls_server_name="server.controlplane")


def test_files_are_read_when_the_client_is_made(files: dict[str, str]) -> None:
    good = ClientOptions(
        ca_file=files["ca"], cert_file=files["client"], key_file=files["client-key"]
    )
    assert good.channel_credentials() is not None
    assert ClientOptions().channel_credentials() is None
    cases = {
        "ca_file: cannot read": ClientOptions(ca_file=files["ca"] + ".missing"),
        "ca_file: .* holds no PEM certificate": ClientOptions(ca_file=files["garbage"]),
        "cert_file / key_file": ClientOptions(
            ca_file=files["ca"], cert_file=files["client"], key_file=files["other-key"]
        ),
    }
    for message, options in cases.items():
        with pytest.raises(ValueError, match=message):
            Client(["127.0.0.1:1"], options)


def namespace(**values: str) -> argparse.Namespace:
    return argparse.Namespace(**{"token": "", "token_file": "", **values})


def test_the_cli_reads_the_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert _token(namespace(token_file=str(token), token="other")) == "s3cret"
    token.write_text("s3cret\n\n")
    # Only one newline is the file's ending.
    assert _token(namespace(token_file=str(token))) == "s3cret\n"
    assert _token(namespace(token="flag")) == "flag"
    with pytest.raises(UsageError, match=r"--token-file .* cannot be read"):
        _token(namespace(token_file=str(tmp_path / "missing")))
    token.write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        _token(namespace(token_file=str(token)))
