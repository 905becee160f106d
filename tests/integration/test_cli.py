"""The `controlplane` command against real agents: output, JSON and exit codes."""

from __future__ import annotations

import argparse
import base64
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.cli import build_parser
from controlplane.testing.agents import (
    AgentProcess,
    clean_environment,
    free_port,
    start_agent,
    wait_until,
)
from controlplane.testing.agents import run_cli as cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = ["--profile", "local", "--drain-period", "0"]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[AgentProcess, AgentProcess]]:
    port = free_port("127.0.0.1", "127.0.0.2")
    first = start_agent("cli-1", host="127.0.0.1", port=port, args=FAST, log_dir=tmp_path)
    second = start_agent("cli-2", host="127.0.0.2", port=port, args=FAST, log_dir=tmp_path)
    try:
        yield first, second
    finally:
        first.kill()
        second.kill()


def test_join_members_tags_event_and_force_leave(pair: tuple[AgentProcess, AgentProcess]) -> None:
    first, second = pair
    joined = cli("join", "--addr", second.target, first.target)
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout == "Successfully joined cluster by contacting 1 nodes.\n"
    assert wait_until(lambda: len(first.members()) == 2, timeout=20)

    text = cli("members", "--addr", first.target)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["cli-1", "cli-2"]
    assert lines[0].split()[1:3] == [first.target, "alive"]
    # Columns are aligned: the status column starts at the same offset on every line.
    assert len({line.index("alive") for line in lines}) == 1

    tagged = cli("tags", "--addr", second.target, "--set", "zone=z2", "--set", "rack=r9")
    assert tagged.returncode == 0, tagged.stderr
    assert "rack=r9" in tagged.stdout
    untagged = cli("tags", "--addr", second.target, "--delete", "rack")
    assert "rack=" not in untagged.stdout

    def second_seen_with_zone() -> bool:
        listed = cli("members", "--addr", first.target, "--format", "json", "--tag", "zone=z2")
        members = json.loads(listed.stdout)["members"]
        return [m["name"] for m in members] == ["cli-2"]

    assert wait_until(second_seen_with_zone, timeout=15)
    detailed = json.loads(cli("members", "--addr", first.target, "--format", "json").stdout)
    cli2 = next(m for m in detailed["members"] if m["name"] == "cli-2")
    assert cli2["tags"]["zone"] == "z2"
    assert cli2["status"] == "alive"
    assert cli2["port"] == first.port
    assert {"min", "max", "current"} <= set(cli2["protocol"])

    fired = cli("event", "--addr", first.target, "deploy", "v42", "--coalesce")
    assert fired.returncode == 0
    assert fired.stdout.startswith("Event 'deploy' dispatched! Coalescing enabled: true")

    second.kill()
    assert wait_until(lambda: first.members().get("cli-2") == "FAILED", timeout=30)
    failed = cli("members", "--addr", first.target, "--status", "failed")
    assert [line.split()[0] for line in failed.stdout.splitlines()] == ["cli-2"]
    forced = cli("force-leave", "--addr", first.target, "cli-2")
    assert forced.returncode == 0, forced.stderr
    assert wait_until(lambda: first.members().get("cli-2") == "LEFT", timeout=15)
    pruned = cli("force-leave", "--addr", first.target, "cli-2", "--prune")
    assert pruned.returncode == 0
    assert wait_until(lambda: "cli-2" not in first.members(), timeout=15)


def test_monitor_streams_events_until_interrupted(pair: tuple[AgentProcess, AgentProcess]) -> None:
    first, second = pair
    env = clean_environment({"CONTROLPLANE_ADDR": first.target})
    monitor = subprocess.Popen(
        [sys.executable, "-m", "controlplane.cli", "monitor", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert monitor.stdout is not None
    lines: list[dict[str, Any]] = []
    reader = threading.Thread(
        target=lambda: lines.extend(json.loads(line) for line in monitor.stdout or ()),
        daemon=True,
    )
    reader.start()
    try:
        # The stream only carries what happens after it is subscribed: wait until it is.
        def subscribed() -> bool:
            cli("event", "--addr", first.target, "warm-up")
            return any(e.get("user", {}).get("name") == "warm-up" for e in list(lines))

        assert wait_until(subscribed, timeout=30, interval=0.5)
        assert cli("join", "--addr", second.target, first.target).returncode == 0
        assert cli("event", "--addr", second.target, "hello", "world").returncode == 0

        def user_event_seen() -> bool:
            return any(e.get("user", {}).get("name") == "hello" for e in list(lines))

        assert wait_until(user_event_seen, timeout=30), lines
        kinds = [event["type"] for event in lines]
        assert "member-join" in kinds
        hello = next(e["user"] for e in lines if e.get("user", {}).get("name") == "hello")
        assert {"name": "hello", "payload": "world"}.items() <= hello.items()
    finally:
        monitor.send_signal(signal.SIGINT)
        assert monitor.wait(timeout=15) == 0


def test_leave_command_stops_the_agent(pair: tuple[AgentProcess, AgentProcess]) -> None:
    first, second = pair
    assert cli("join", "--addr", second.target, first.target).returncode == 0
    assert wait_until(lambda: len(first.members()) == 2, timeout=20)
    left = cli("leave", "--addr", second.target)
    assert left.returncode == 0, left.stderr
    assert left.stdout == "Graceful leave complete\n"
    assert second.process.wait(timeout=30) == 0
    assert wait_until(lambda: first.members().get("cli-2") == "LEFT", timeout=15)


def test_exit_codes(pair: tuple[AgentProcess, AgentProcess]) -> None:
    first, _ = pair
    # 1: the agent answers with an error.
    missing = cli("force-leave", "--addr", first.target, "nobody")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [missing.stderr.strip()]
    assert "NOT_FOUND" in missing.stderr
    # 1: no agent there.
    unreachable = cli("members", "--addr", f"127.0.0.1:{free_port()}", "--timeout", "2")
    assert unreachable.returncode == 1
    assert "cannot reach the agent" in unreachable.stderr
    # 2: usage errors, one line.
    for args in (
        ["members", "--status", "sleeping"],
        ["tags", "--set", "novalue"],
        ["monitor", "--type", "nope"],
        ["frobnicate"],
    ):
        result = cli(*args, "--addr", first.target) if args[0] != "frobnicate" else cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert result.stderr.startswith("controlplane: "), (args, result.stderr)


def test_keygen_prints_a_usable_key(tmp_path: Path) -> None:
    generated = cli("keygen")
    assert generated.returncode == 0
    assert len(base64.b64decode(generated.stdout.strip(), validate=True)) == 32


def test_addr_falls_back_to_the_environment(pair: tuple[AgentProcess, AgentProcess]) -> None:
    first, _ = pair
    listed = cli("members", env={"CONTROLPLANE_ADDR": first.target})
    assert listed.returncode == 0
    assert listed.stdout.split()[0] == "cli-1"


# ----------------------------------------------------------- a new user's first hour


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "controlplane 0.1.0\n"


def _arguments(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _arguments(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield f"{path} {'/'.join(action.option_strings) or action.dest}", action


def test_every_argument_has_help_text() -> None:
    arguments = list(_arguments(build_parser(), "controlplane"))
    assert len(arguments) > 50
    missing = [name for name, action in arguments if not (action.help or "").strip()]
    assert not missing, f"arguments without help: {missing}"


def test_tags_without_arguments_shows_the_tags(agent: AgentProcess) -> None:
    shown = cli("tags", "--addr", agent.target)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"Tags of {agent.name}: api_version=1.0,rank=0,role=server\n"
    changed = cli("tags", "--addr", agent.target, "--set", "zone=a", "--format", "json")
    assert json.loads(changed.stdout)["tags"]["zone"] == "a"
    again = cli("tags", "--addr", agent.target, "--format", "json")
    assert json.loads(again.stdout) == json.loads(changed.stdout)


def test_errors_share_one_prefix(agent: AgentProcess, tmp_path: Path) -> None:
    bad_file = tmp_path / "agent.toml"
    bad_file.write_text("prot = 1\n")
    for args, status in (
        (["members", "--bogus"], 2),  # argparse, client command
        (["agent", "--port", "0"], 2),  # a setting
        (["agent", "--config", str(bad_file)], 2),  # a config file
        (["agent", "--port", str(agent.port)], 2),  # the agent cannot start
        (["keys", "--addr", agent.target], 2),  # a command's own check
        (["force-leave", "--addr", agent.target, "nobody"], 1),  # the agent's answer
    ):
        result = cli(*args)
        assert result.returncode == status, (args, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith("controlplane: "), (args, lines)
        assert not lines[0].startswith(("controlplane: controlplane", "controlplane: agent:"))


def test_a_bad_regex_is_one_clean_line(agent: AgentProcess) -> None:
    result = cli("members", "--addr", agent.target, "--name", "[")
    assert result.returncode == 1
    assert result.stderr == (
        "controlplane: INVALID_ARGUMENT: name_pattern: is not a valid RE2 regular expression:"
        " missing ]: [\n"
    )
    tag = cli("members", "--addr", agent.target, "--tag", "zone=(")
    assert tag.returncode == 1
    assert "b'" not in tag.stderr
    assert "missing ): (" in tag.stderr
    # RE2 itself printed nothing on the agent's stderr (its log).
    assert wait_until(lambda: "serving on" in agent.log(), timeout=5)
    assert "re2" not in agent.log().lower()
    assert "Error parsing" not in agent.log()


def test_rtt_between_agents_from_their_coordinates(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    first, second = pair
    assert cli("join", "--addr", second.target, first.target).returncode == 0
    estimate = re.compile(
        r"Estimated (\S+) <-> (\S+) rtt: (\d+\.\d{3}) ms \(using LAN coordinates\)\n"
    )

    def probed_a_few_times() -> bool:
        # Each probe moves the coordinates; a few acks make the estimate settle.
        answer = cli("rtt", "--addr", first.target, "cli-2")
        match = estimate.fullmatch(answer.stdout)
        return answer.returncode == 0 and match is not None and float(match[3]) > 0.05

    assert wait_until(probed_a_few_times, timeout=20)
    for target, args in ((first, ["cli-2"]), (second, ["cli-1", "cli-2"])):
        answer = cli("rtt", "--addr", target.target, *args)
        assert answer.returncode == 0, answer.stderr
        match = estimate.fullmatch(answer.stdout)
        assert match is not None, answer.stdout
        assert {match[1], match[2]} == {"cli-1", "cli-2"}
        # Loopback: well under a few milliseconds.
        assert 0.0 < float(match[3]) < 20.0, answer.stdout

    unknown = cli("rtt", "--addr", first.target, "nobody")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("controlplane: NOT_FOUND: node: ")
    bad = cli("rtt", "--addr", first.target, "no such node")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
