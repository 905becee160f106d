"""Configuration precedence and validation, without starting anything."""

from __future__ import annotations

import base64
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from controlplane import agent, cli, datadir, election
from controlplane.agent import check_token_protection
from controlplane.api import auth
from controlplane.api.auth import load_tokens_file
from controlplane.config import (
    SETTINGS,
    AgentConfig,
    build_config,
    environment_warnings,
    load_file,
    split_join_address,
)
from controlplane.configerror import ConfigError
from controlplane.datadir import check_data_dir
from controlplane.election import ElectionConfig
from controlplane.election import config as election_config
from controlplane.ring import LookupRule, RingSettings, VnodeFormula
from controlplane.shell import tls
from controlplane.shell.election import EpochStore
from controlplane.shell.tls import load_material


def test_defaults() -> None:
    config = build_config()
    assert config.bind == "127.0.0.1"
    assert config.port == 7946
    assert config.profile == "lan"
    assert config.role == "server"
    assert config.listen_target == "127.0.0.1:7946"


def test_precedence_file_then_environment_then_flags() -> None:
    file_values = {"port": 1000, "profile": "wan", "role": "client", "node": "from-file"}
    environ = {"CONTROLPLANE_PORT": "2000", "CONTROLPLANE_PROFILE": "local"}
    flags = {"port": "3000"}
    config = build_config(file_values=file_values, environ=environ, flags=flags)
    assert config.port == 3000  # flag beats environment and file
    assert config.profile == "local"  # environment beats file
    assert config.role == "client"  # file beats default
    assert config.node == "from-file"


def test_unrelated_environment_variables_are_ignored() -> None:
    config = build_config(environ={"CONTROLPLANE_ADDR": "x:1", "CONTROLPLANE_TOKEN": "t"})
    assert config == AgentConfig(node=config.node)


def test_lists_and_tags_from_each_source() -> None:
    config = build_config(
        file_values={"join": ["a:1", "b:2"], "tags": {"rack": "r1"}},
        environ={"CONTROLPLANE_TAGS": "zone=z1,rack=r2"},
    )
    assert config.join == ("a:1", "b:2")
    assert config.tags == {"zone": "z1", "rack": "r2"}
    assert build_config(flags={"join": ["c:3"]}).join == ("c:3",)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"file_values": {"colour": "red"}}, "unknown key 'colour'"),
        ({"file_values": {"port": "x"}}, "port must be an integer"),
        ({"file_values": {"port": True}}, "port must be an integer, got a boolean"),
        ({"flags": {"port": "65536"}}, "flag --port: port must be an integer from 1 to 65535"),
        ({"environ": {"CONTROLPLANE_BIND": "nowhere"}}, "CONTROLPLANE_BIND: bind must be an IPv4"),
        ({"flags": {"node": "bad name"}}, "node must be 1 to 128 characters"),
        ({"flags": {"node": "n" * 129}}, "node must be 1 to 128 characters"),
        ({"flags": {"shutdown_grace": "-1"}}, "shutdown_grace must be from 0 to 300"),
        ({"flags": {"loop_lag_interval": "0"}}, "loop_lag_interval must be from 0.01 to 60"),
        ({"flags": {"tags": ["novalue"]}}, "tags must be key=value pairs"),
        ({"flags": {"tags": [f"k=v{'x' * 600}"]}}, "tags must encode to at most 512 bytes"),
        ({"flags": {"log_level": "loud"}}, "log_level must be one of"),
    ],
)
def test_bad_values_name_the_key_and_the_rule(source: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_config(**source)  # type: ignore[arg-type]
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_node_name_at_the_limit_is_accepted() -> None:
    assert build_config(flags={"node": "n" * 128}).node == "n" * 128


def test_ipv6_listen_target_is_bracketed() -> None:
    assert build_config(flags={"bind": "::1", "port": "7000"}).listen_target == "[::1]:7000"


def test_unspecified_bind_advertises_a_host_address_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake_getaddrinfo(*args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return [(0, 0, 0, "", ("127.0.1.1", 0)), (0, 0, 0, "", ("10.1.2.3", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert build_config(flags={"bind": "0.0.0.0"}).advertise_address == "10.1.2.3"
    config = build_config(flags={"bind": "0.0.0.0", "advertise": "127.0.0.9"})
    assert config.advertise_address == "127.0.0.9"


def test_unspecified_bind_falls_back_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_address(*args: object, **kwargs: object) -> list[tuple[object, ...]]:
        raise OSError("no name")

    monkeypatch.setattr(socket, "getaddrinfo", no_address)
    assert build_config(flags={"bind": "0.0.0.0"}).advertise_address == "127.0.0.1"


def test_load_file_parses_toml(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('port = 8000\nprofile = "local"\n[tags]\nrole2 = "x"\n')
    config = build_config(file_values=load_file(path))
    assert (config.port, config.profile, dict(config.tags)) == (8000, "local", {"role2": "x"})


def test_encryption_key_must_be_base64_of_an_aes_key_size() -> None:

    for size in (16, 24, 32):
        key = base64.b64encode(bytes(size)).decode()
        assert build_config(flags={"encrypt": key}).encryption_key == bytes(size)
    with pytest.raises(ConfigError, match="encrypt must decode to 16, 24 or 32 bytes"):
        build_config(flags={"encrypt": base64.b64encode(bytes(20)).decode()})
    with pytest.raises(ConfigError, match="encrypt must be a base64-encoded key"):
        build_config(flags={"encrypt": "not base64!"})
    assert build_config().encryption_key is None


def test_cluster_label_limit() -> None:
    assert build_config(flags={"cluster_label": "x" * 255}).cluster_label == "x" * 255
    with pytest.raises(ConfigError, match="cluster_label must be at most 255 bytes"):
        build_config(flags={"cluster_label": "x" * 256})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", ("10.0.0.1", None)),
        ("10.0.0.1:8000", ("10.0.0.1", 8000)),
        ("agent-1", ("agent-1", None)),
        ("cp_agent_1:7946", ("cp_agent_1", 7946)),
        ("agents.example.com.", ("agents.example.com.", None)),
        ("[::1]:7946", ("::1", 7946)),
        ("[fe80::1]", ("fe80::1", None)),
        ("::1", ("::1", None)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
    ],
)
def test_join_addresses_that_are_accepted(text: str, expected: tuple[str, int | None]) -> None:
    assert split_join_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:99999", "has port '99999'; a port is 1 to 65535"),
        ("127.0.0.1:0", "has port '0'"),
        ("127.0.0.1:", "has port ''"),
        ("127.0.0.1:x", "has port 'x'"),
        ("999.0.0.1", "no valid host name or IPv4 address"),
        (":7946", "no valid host name or IPv4 address"),
        ("-agent", "no valid host name or IPv4 address"),
        ("a..b", "no valid host name or IPv4 address"),
        ("[::1", "must be [IPv6]:port"),
        ("[::1]7946", "must be [IPv6]:port"),
        ("[10.0.0.1]:1", "no IPv6 address between the brackets"),
        ("1:2:3", "neither host:port nor an IPv6 address"),
        ("", "must be host or host:port"),
        (" 10.0.0.1", "must be host or host:port"),
    ],
)
def test_join_addresses_that_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        split_join_address(text)
    with pytest.raises(ConfigError) as raised:
        build_config(flags={"join": ["10.0.0.2", text]})
    assert str(raised.value).startswith(f"flag --join: join address {text!r}")


def test_unknown_environment_variables_are_warned_about() -> None:
    environ = {
        "CONTROLPLANE_PROT": "7000",
        "CONTROLPLANE_PORT": "7000",
        "CONTROLPLANE_ADDR": "x:1",
        "CONTROLPLANE_HEALTH_TARGET": "x:1",
        "CONTROLPLANE_SOMETHING_ELSE": "1",
        "PATH": "/bin",
    }
    prot, other = environment_warnings(environ)
    assert (
        "CONTROLPLANE_PROT is not a setting and is ignored (did you mean CONTROLPLANE_PORT?)"
        in prot
    )
    assert "CONTROLPLANE_SOMETHING_ELSE is not a setting and is ignored; known: " in other
    known = other.split("; known: ")[1].split(", ")
    assert known == sorted(known)
    assert {setting.env for setting in SETTINGS.values()} <= set(known)
    assert {"CONTROLPLANE_ADDR", "CONTROLPLANE_TOKEN", "CONTROLPLANE_HEALTH_TARGET"} <= set(known)
    assert environment_warnings({"CONTROLPLANE_PORT": "1", "HOME": "/"}) == []
    # The warnings do not change what the agent reads.
    assert build_config(environ=environ).port == 7000


@pytest.mark.parametrize("port", ["79²", "٧٩٤٦"])
def test_a_join_port_is_ascii_digits(port: str) -> None:
    # str.isdigit() accepts these; int() refuses the first and reads the second.
    with pytest.raises(ConfigError, match="a port is 1 to 65535"):
        build_config(flags={"join": (f"10.0.0.1:{port}",)})


# ------------------------------------------------- one ConfigError for all


def _former_kinds(tmp_path: Path) -> dict[str, Callable[[], object]]:
    """What raised each of the former error classes, by the class's old name."""
    missing = str(tmp_path / "missing")
    damaged_epoch = tmp_path / "epoch"
    damaged_epoch.mkdir()
    (damaged_epoch / "election.epoch").write_text("not an epoch\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    return {
        "ConfigError": lambda: build_config(flags={"port": "70000"}),
        "TokensFileError": lambda: load_tokens_file(missing),
        "TlsFileError": lambda: load_material("", missing, missing),
        "StateFileError": lambda: check_data_dir(str(a_file)),
        "StateFileError (epoch)": lambda: EpochStore(str(damaged_epoch)).load(),
        "ElectionConfigError": lambda: ElectionConfig(lease_time=0.0),
        "AgentStartError": lambda: check_token_protection(
            build_config(flags={"api_token": "t" * 16}), None
        ),
    }


def test_every_former_kind_of_config_error_raises_config_error(tmp_path: Path) -> None:
    for kind, raise_it in _former_kinds(tmp_path).items():
        with pytest.raises(ConfigError) as raised:
            raise_it()
        assert type(raised.value) is ConfigError, kind
        assert "\n" not in str(raised.value), kind


def test_the_former_error_classes_are_gone() -> None:
    modules = (auth, tls, datadir, election_config, agent, election)
    for name in ("TokensFileError", "TlsFileError", "StateFileError", "ElectionConfigError"):
        assert not any(hasattr(module, name) for module in modules), name
    assert not hasattr(agent, "AgentStartError")
    # A node name taken in the cluster is the one error found after start: still a
    # ConfigError (start the agent with another --node), so exit 2 as well.
    assert issubclass(agent.NodeNameTaken, ConfigError)


def test_the_command_line_reports_each_in_one_line_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in os.environ if n.startswith("CONTROLPLANE_")]:
        if name != "CONTROLPLANE_STRICT":
            monkeypatch.delenv(name)
    for kind, raise_it in _former_kinds(tmp_path).items():

        async def run(self: agent.Agent, raise_it: Callable[[], object] = raise_it) -> int:
            raise_it()
            return 0

        monkeypatch.setattr(agent.Agent, "run", run)
        assert cli.main(["agent", "--port", "7946"]) == 2, kind
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1, (kind, lines)
        assert lines[0].startswith("controlplane: "), (kind, lines)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"coalesce_period": 3.0}, "coalesce_period is set but quiescent_period is not"),
        ({"quiescent_period": 1.0}, "quiescent_period is set but coalesce_period is not"),
        (
            {"user_coalesce_period": 0.0},
            "user_quiescent_period is set but user_coalesce_period is not",
        ),
        (
            {"coalesce_period": 1.0, "quiescent_period": 2.0},
            "quiescent_period (2 s) must not exceed coalesce_period (1 s)",
        ),
    ],
)
def test_coalescing_needs_both_periods_in_order(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        build_config(flags=flags)
    assert message in str(refused.value)


def test_user_events_are_coalesced_and_member_events_not_by_default() -> None:
    config = build_config()
    assert (config.user_coalesce_period, config.user_quiescent_period) == (3.0, 1.0)
    assert (config.coalesce_period, config.quiescent_period) == (0.0, 0.0)
    both_off = build_config(flags={"user_coalesce_period": 0.0, "user_quiescent_period": 0.0})
    assert both_off.user_coalesce_period == 0.0
    with pytest.raises(ConfigError, match="tombstone_timeout must be from 1 second to 30 days"):
        build_config(flags={"tombstone_timeout": 0.5})


def test_join_retries_are_bounded() -> None:
    assert (build_config().retry_interval, build_config().retry_max) == (1.0, 0)
    with pytest.raises(ConfigError, match=r"retry_interval must be from 0\.1 to 300 seconds"):
        build_config(flags={"retry_interval": 0.0})
    with pytest.raises(ConfigError, match="retry_max must be 0"):
        build_config(flags={"retry_max": -1})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"max_clock_skew": 0.1},
            (
                "election settings refused: max_clock_skew (0.1 s) must exceed"
                " 2 * max_drift * lease_time / (1 - max_drift) = 0.202 s for lease_time 10 s"
            ),
        ),
        (
            {"lease_time": 60.0},
            (
                "max_clock_skew (1 s) must exceed 2 * max_drift * lease_time / (1 - max_drift)"
                " = 1.212 s for lease_time 60 s"
            ),
        ),
        (
            {"lease_time": 4.0, "beat_interval": 2.5},
            "beat_interval (2.5 s) must be at most half of lease_time (4 s)",
        ),
        (
            {"lease_time": 20.0, "beat_interval": 3.0},
            "beat_interval (3 s) must be below 2.66667 s with profile lan",
        ),
        ({"lease_time": 0.5}, "lease_time must be from 1 to 600 seconds, got 0.5"),
        ({"beat_interval": 0.0}, "beat_interval must be from 0.05 to 60 seconds"),
        ({"max_clock_skew": -1.0}, "max_clock_skew must be from 0 to 60 seconds"),
    ],
)
def test_election_timings_are_refused_when_unsafe_together(
    flags: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        build_config(flags=flags)
    assert message in str(refused.value)


def test_election_timings_that_are_safe_together_reach_the_config() -> None:
    config = build_config(flags={"lease_time": 4.0, "beat_interval": 0.5, "max_clock_skew": 0.2})
    assert (config.lease_time, config.beat_interval, config.max_clock_skew) == (4.0, 0.5, 0.2)
    # The wan profile detects failures slowly enough for hnatsd's 3 s beat.
    wan = build_config(flags={"profile": "wan", "lease_time": 12.0, "beat_interval": 3.0})
    assert wan.beat_interval == 3.0
    assert (build_config().lease_time, build_config().max_clock_skew) == (10.0, 1.0)


RINGMAN = RingSettings(vnodes=40, points_per_vnode=3, lookup=LookupRule.AFTER)


def test_ring_settings_from_each_source(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[rings.ringman]\npoints_per_vnode = 3\nlookup = "after"\n'
        '[rings."my.ring"]\nvnodes = 160\nvnode_formula = "float64"\n'
    )
    from_file = build_config(file_values=load_file(path)).rings
    from_environment = build_config(
        environ={"CONTROLPLANE_RINGS": "ringman.points_per_vnode=3, ringman.lookup=after"}
    ).rings
    from_flags = build_config(
        flags={"rings": ["ringman.vnodes=40", "ringman.points_per_vnode=3", "ringman.lookup=after"]}
    ).rings

    assert from_file == {
        "my.ring": RingSettings(vnodes=160, vnode_formula=VnodeFormula.FLOAT64),
        "ringman": RINGMAN,
    }
    assert from_environment == from_flags == {"ringman": RINGMAN}
    # Like tags, a later source replaces the whole setting.
    assert build_config(
        file_values={"rings": {"a": {"vnodes": 10}}},
        environ={"CONTROLPLANE_RINGS": "b.vnodes=20"},
    ).rings == {"b": RingSettings(vnodes=20)}
    assert build_config().rings == {}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"rings": {"a": {"vnodes": 0}}}, "rings entry 'a.vnodes' must be from 1 to 1000, got 0"),
        ({"rings": {"a": {"vnodes": 1001}}}, "'a.vnodes' must be from 1 to 1000, got 1001"),
        ({"rings": {"a": {"vnodes": True}}}, "'a.vnodes' must be an integer, got a boolean"),
        ({"rings": {"a": {"points_per_vnode": 5}}}, "'a.points_per_vnode' must be from 1 to 4"),
        ({"rings": {"a": {"points_per_vnode": "x"}}}, "'a.points_per_vnode' must be an integer"),
        ({"rings": {"a": {"vnode_formula": "float"}}}, "must be one of exact, float64; got"),
        ({"rings": {"a": {"lookup": "before"}}}, "must be one of at_or_after, after; got"),
        ({"rings": {"a": {"replicas": 3}}}, "'a.replicas' is not a ring setting (known: lookup,"),
        ({"rings": {"bad name": {"vnodes": 3}}}, "entry 'bad name' must name a ring: 1 to 128"),
        ({"rings": {"a": 3}}, "entry 'a' must be a table of lookup, points_per_vnode"),
        ({"rings": "a=3"}, "rings must be NAME.KEY=VALUE items, got 'a=3'"),
        ({"rings": {f"r{i}": {} for i in range(101)}}, "may configure at most 100 rings, got 101"),
    ],
)
def test_bad_ring_settings_name_the_ring_and_the_rule(
    source: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        build_config(file_values=source, file_name="config file 'agent.toml'")
    assert message in str(raised.value)
    assert str(raised.value).startswith("config file 'agent.toml': rings ")
    assert "\n" not in str(raised.value)


def test_a_bad_ring_flag_exits_2_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["agent", "--ring", "cache.points_per_vnode=9"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        (
            "controlplane: flag --rings: rings entry 'cache.points_per_vnode' must be from 1 to 4,"
            " got 9"
        )
    ]


def test_query_handlers_come_from_flags_files_and_the_environment() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["agent", "--query-handler", "who=/bin/echo 'a b'", "--query-handler", "*=/bin/true"]
    )
    config = cli.agent_config(args, {})
    assert config.query_handlers == {"who": "/bin/echo 'a b'", "*": "/bin/true"}
    assert config.query_handler_timeout == 5.0
    from_file = build_config(
        file_values={"query_handlers": {"deploy": "/usr/bin/deploy --now"}},
        environ={"CONTROLPLANE_QUERY_HANDLER_TIMEOUT": "2"},
    )
    assert from_file.query_handlers == {"deploy": "/usr/bin/deploy --now"}
    assert from_file.query_handler_timeout == 2.0
    # One handler from the environment: commas belong to the command.
    env = build_config(environ={"CONTROLPLANE_QUERY_HANDLERS": "who=/bin/echo a,b"})
    assert env.query_handlers == {"who": "/bin/echo a,b"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (["who"], "NAME=COMMAND"),
        (["who="], "is empty"),
        (["=cmd"], "1 to 128 bytes"),
        (["who\x1b[2J=/bin/true"], "without control characters"),
        (["who=echo 'unclosed"], "cannot be split"),
        ([f"q{i}=true" for i in range(65)], "at most 64"),
    ],
)
def test_bad_query_handlers_are_one_line(raw: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(flags={"query_handlers": raw})


def test_the_handler_timeout_is_bounded() -> None:
    with pytest.raises(ConfigError, match="at most 300"):
        build_config(flags={"query_handler_timeout": "301"})
