"""The command line's client commands go through controlplane.client: the flags
become the client's options, and the client's errors become one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane import cli
from controlplane.client import Client
from controlplane.errors import NotFound, Unavailable


def test_the_flags_become_the_clients_options(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    args = cli.build_parser().parse_args(
        ["members", "--addr", "127.0.0.9:7000", "--timeout", "3", "--token-file", str(token_file)]
    )
    with cli._client(args) as client:
        assert isinstance(client, Client)
        assert [s.address for s in client.servers()] == ["127.0.0.9:7000"]
        assert client.options.timeout == 3.0
        assert client.options.token == "s3cret-token"
        assert client.options.heartbeat is False


def test_an_agents_answer_is_its_status_and_its_own_words() -> None:
    error = NotFound("Membership/ForceLeave on 127.0.0.1:7946: no member named 'x' (advice)")
    error.status_message = "no member named 'x'"
    assert cli._describe(error, "127.0.0.1:7946") == "NOT_FOUND: no member named 'x'"


def test_no_answer_at_all_says_the_agent_cannot_be_reached() -> None:
    error = Unavailable("Membership/ListMembers: no server answered (tried 127.0.0.1:1)")
    assert cli._describe(error, "127.0.0.1:1").startswith("cannot reach the agent at 127.0.0.1:1: ")


def test_a_bad_address_is_a_usage_error() -> None:
    args = cli.build_parser().parse_args(["members", "--addr", "no-port-here"])
    with pytest.raises(cli.UsageError, match="--addr"):
        cli._client(args)
