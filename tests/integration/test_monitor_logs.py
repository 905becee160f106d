"""`controlplane monitor --log-level` streams an agent's own log from a real agent:
debug lines reach the reader while the agent's stderr stays at its level."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from controlplane.testing.agents import clean_environment, free_port, run_cli, start_agent

HOSTS = ("127.0.0.61", "127.0.0.62")


def test_monitor_streams_debug_lines_the_agent_does_not_print(tmp_path: Path) -> None:
    port = free_port(*HOSTS)
    first = start_agent(
        "mon-1", host=HOSTS[0], port=port, args=["--profile", "local"], log_dir=tmp_path
    )
    monitor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controlplane.cli",
            "monitor",
            "--log-level",
            "debug",
            "--addr",
            first.target,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environment(),
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        for line in monitor.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read_lines)
    reader.start()
    second = None
    try:

        def wait_for(text: str, timeout: float = 20.0) -> str:
            while True:
                line = lines.get(timeout=timeout)
                if text in line:
                    return line

        # A line the agent logs at info, asked for until the stream shows one: proof
        # the monitor is reading before the join.
        for _ in range(40):
            first.process.send_signal(signal.SIGHUP)
            try:
                sighup = wait_for("SIGHUP", timeout=0.5)
                break
            except queue.Empty:
                continue
        assert "INFO controlplane.agent: SIGHUP" in sighup
        second = start_agent(
            "mon-2",
            host=HOSTS[1],
            port=port,
            args=["--profile", "local", "--join", first.target],
            log_dir=tmp_path,
        )
        assert "INFO controlplane.gossip: member-join: mon-2" in wait_for("member-join")
        # A tag change is logged at debug: the reader sees it, the agent's log does not.
        assert run_cli("tags", "--set", "zone=z9", "--addr", second.target).returncode == 0
        updated = wait_for("member-update")
        assert "DEBUG controlplane.gossip: member-update: mon-2" in updated
        assert "member-update" not in first.log()
    finally:
        monitor.terminate()
        monitor.wait(10)
        reader.join(10)
        if second is not None:
            second.kill()
        first.kill()


def test_monitor_refuses_an_unknown_level_and_a_type_with_it() -> None:
    result = run_cli("monitor", "--log-level", "loud", "--addr", "127.0.0.1:1", timeout=20)
    assert result.returncode == 2
    assert "--log-level must be one of debug, info, warning, error" in result.stderr
    result = run_cli(
        "monitor", "--log-level", "info", "--type", "user", "--addr", "127.0.0.1:1", timeout=20
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
