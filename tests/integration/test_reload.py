"""SIGHUP reads the configuration again: the log level and the tags change at once,
other settings wait for a restart and say so, a broken file changes nothing. And
logs as JSON lines with hclog's keys."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from controlplane.testing.agents import AgentProcess, run_cli, start_agent, wait_until
from controlplane.v1 import membership_pb2, membership_pb2_grpc

JSON_KEYS = ["@timestamp", "@level", "@module", "@message"]


def write_config(path: Path, *, zone: str, team: str | None, level: str) -> None:
    tags = f'zone = "{zone}"' + (f'\nteam = "{team}"' if team else "")
    path.write_text(f'log_level = "{level}"\n\n[tags]\n{tags}\n')


def own_tags(agent: AgentProcess) -> dict[str, str]:
    with agent.channel() as channel:
        stub = membership_pb2_grpc.MembershipStub(channel)
        answer = stub.GetLocalMember(membership_pb2.GetLocalMemberRequest(), timeout=5)
    return dict(answer.member.tags)


def test_sighup_applies_the_log_level_and_tags_and_names_what_waits(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, zone="a", team="x", level="info")
    agent = start_agent(
        "hup", args=["--profile", "local", "--config", str(config)], log_dir=tmp_path
    )
    try:
        assert wait_until(lambda: own_tags(agent).get("zone") == "a", 10)
        assert own_tags(agent)["team"] == "x"
        write_config(config, zone="b", team=None, level="debug")
        agent.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: own_tags(agent).get("zone") == "b", 10), agent.log()
        tags = own_tags(agent)
        assert "team" not in tags
        assert tags["role"] == "server"  # the agent's own tags stay
        log = agent.log()
        assert "SIGHUP: log level debug (was info)" in log
        assert "SIGHUP: tags " in log
        assert "restart the agent" not in log
        assert agent.process.poll() is None

        # A file that no longer parses: one error line, nothing changes.
        config.write_text("log_level = \n")
        agent.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "configuration not reloaded" in agent.log(), 10)
        assert own_tags(agent)["zone"] == "b"
        assert agent.process.poll() is None
    finally:
        agent.kill()


def test_a_setting_that_needs_a_restart_is_named_on_sighup(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('drain_period = 1\n[tags]\nzone = "a"\n')
    agent = start_agent(
        "hup2", args=["--profile", "local", "--config", str(config)], log_dir=tmp_path
    )
    try:
        config.write_text('drain_period = 3\n[tags]\nzone = "a"\n')
        agent.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "restart the agent to apply" in agent.log(), 10), agent.log()
        assert "SIGHUP: drain_period changed" in agent.log()
    finally:
        agent.kill()


def test_json_logs_are_one_object_per_line_with_hclog_keys(tmp_path: Path) -> None:
    agent = start_agent(
        "jsonlog", args=["--profile", "local", "--log-format", "json"], log_dir=tmp_path
    )
    try:
        agent.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "nothing changed" in agent.log(), 10)
    finally:
        agent.terminate()
    lines = [line for line in agent.log().splitlines() if line.strip()]
    assert len(lines) >= 3
    records = [json.loads(line) for line in lines]
    for record in records:
        assert list(record)[:4] == JSON_KEYS
        assert record["@level"] in ("debug", "info", "warn", "error")
        assert record["@timestamp"].endswith("Z")
    assert any(
        r["@module"] == "controlplane.agent" and "serving on" in r["@message"] for r in records
    )


def test_an_unknown_log_format_is_refused_with_one_line() -> None:
    result = run_cli("agent", "--log-format", "yaml", timeout=20)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--log-format" in result.stderr
    assert "text, json" in result.stderr
