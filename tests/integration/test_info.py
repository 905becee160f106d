"""`controlplane info` and GetInfo on real agents: the agent, its runtime, member
counts, clocks, election and rings, as text (Serf's layout) and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from controlplane.client import Client, ClientOptions
from controlplane.testing.agents import free_port, run_cli, start_agent, wait_until

HOSTS = ("127.0.0.51", "127.0.0.52")


def test_info_describes_the_agent_and_its_cluster(tmp_path: Path) -> None:
    port = free_port(*HOSTS)
    first = start_agent(
        "info-1", host=HOSTS[0], port=port, args=["--profile", "local"], log_dir=tmp_path
    )
    second = start_agent(
        "info-2",
        host=HOSTS[1],
        port=port,
        args=["--profile", "local", "--join", first.target, "--tag", "zone=z1"],
        log_dir=tmp_path,
    )
    try:
        assert wait_until(lambda: len(first.members()) == 2, 20)
        # No heartbeats: they would move the client to whichever agent they list first.
        with Client([second.target], ClientOptions(heartbeat=False)) as client:
            client.add_node("10.0.0.7", 11211, ring="cache")
            assert wait_until(lambda: len(client.info().rings) == 1, 10)
            info = client.info()
        assert info.agent.name == "info-2"
        assert info.agent.address == second.target
        assert info.agent.profile == "local"
        assert info.agent.tags["zone"] == "z1"
        assert info.agent.uptime.seconds >= 0
        assert info.runtime.python.startswith("3.")
        assert info.runtime.rss_bytes > 10_000_000
        assert info.runtime.tasks > 0
        assert (info.gossip.members, info.gossip.alive, info.gossip.failed) == (2, 2, 0)
        assert info.gossip.member_time > 0
        assert info.gossip.encrypted is False
        assert "TLS" in info.gossip.tls
        assert [(r.name, r.nodes) for r in info.rings] == [("cache", 1)]

        result = run_cli("info", "--addr", second.target, timeout=20)
        assert result.returncode == 0, result.stderr
        text = result.stdout
        for section in ("agent:", "runtime:", "gossip:", "election:", "rings:"):
            assert f"\n{section}\n" in f"\n{text}"
        assert "\tname = info-2\n" in text
        assert "\talive = 2\n" in text
        assert "\tencrypted = false\n" in text
        assert "\tcache = nodes 1, version " in text
        assert "\tlease_time = 10s\n\tmax_clock_skew = 1s\n" in text

        result = run_cli("info", "--addr", second.target, "--format", "json", timeout=20)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert document["agent"]["name"] == "info-2"
        assert document["gossip"]["alive"] == 2
        assert document["gossip"]["failed"] == 0  # printed even when zero
        assert document["rings"][0]["name"] == "cache"
        assert document["runtime"]["loop_lag_max"].endswith("s")
    finally:
        second.kill()
        first.kill()


def test_info_against_nothing_fails_with_one_line() -> None:
    result = run_cli("info", "--addr", f"127.0.0.1:{free_port()}", "--timeout", "1", timeout=20)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
