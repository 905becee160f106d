"""Bad input is rejected with ValueError subclasses naming the field and limit."""

from __future__ import annotations

import random

import pytest

from controlplane.pool import (
    ApiVersion,
    EjectionPolicy,
    InvalidAddressError,
    InvalidApiVersionError,
    InvalidConfigError,
    InvalidCountError,
    InvalidServerError,
    InvalidTimeError,
    PoolConfig,
    PoolInputError,
    Server,
    ServerPool,
    parse_address,
)

from .helpers import make_pool, make_server


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("10.0.0.1:7946", "10.0.0.1", 7946),
        ("server-1.example:1", "server-1.example", 1),
        ("[::1]:65535", "[::1]", 65535),
    ],
)
def test_parse_address_accepts_host_port(address: str, host: str, port: int) -> None:
    assert parse_address(address) == (host, port)


@pytest.mark.parametrize(
    "address",
    [
        "",
        " 10.0.0.1:80",
        "10.0.0.1",
        ":80",
        "host:",
        "host:0",
        "host:65536",
        "host:http",
        "::1:80",
        "[::1:80",
        "bad host:80",
        "host:-1",
    ],
)
def test_parse_address_rejects_malformed_addresses(address: str) -> None:
    with pytest.raises(InvalidAddressError) as caught:
        parse_address(address)
    assert str(caught.value).startswith("address: ")
    assert isinstance(caught.value, ValueError)


def test_server_validation_names_the_field() -> None:
    with pytest.raises(InvalidServerError, match=r"^name: must be a non-empty string"):
        Server(name=" ", address="10.0.0.1:80")
    with pytest.raises(InvalidAddressError, match=r"^address: .*1\.\.65535"):
        Server(name="s1", address="")
    with pytest.raises(
        InvalidApiVersionError, match=r"^api_version\.minor: must be an integer >= 0"
    ):
        ApiVersion(1, -1)
    with pytest.raises(InvalidServerError, match=r"^draining: must be a bool"):
        Server(name="s1", address="10.0.0.1:80", draining="yes")  # type: ignore[arg-type]


def test_config_validation_names_the_field_and_limit() -> None:
    with pytest.raises(InvalidConfigError, match=r"^consecutive_failures: .*>= 1"):
        EjectionPolicy(consecutive_failures=0)
    with pytest.raises(InvalidConfigError, match=r"^max_ejection_percent: .*0\.\.100"):
        EjectionPolicy(max_ejection_percent=101)
    with pytest.raises(InvalidConfigError, match=r"^base_ejection_time: .*> 0"):
        EjectionPolicy(base_ejection_time=-1.0)
    with pytest.raises(InvalidConfigError, match=r"^max_ejection_time: must be >= base"):
        EjectionPolicy(base_ejection_time=60.0, max_ejection_time=30.0)
    with pytest.raises(InvalidAddressError, match=r"^seed_addresses\[1\]: "):
        PoolConfig(seed_addresses=("dns.example:7946", "nope"))
    with pytest.raises(InvalidConfigError, match=r"^seed_addresses: "):
        PoolConfig(seed_addresses="dns.example:7946")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match=r"^rng: "):
        ServerPool(rng=None)  # type: ignore[arg-type]


def test_seed_addresses_are_deduplicated_in_order() -> None:
    config = PoolConfig(seed_addresses=("b.example:1", "a.example:1", "b.example:1"))
    assert config.seed_addresses == ("b.example:1", "a.example:1")


def test_pool_rejects_bad_counts_times_and_servers() -> None:
    pool = make_pool()
    with pytest.raises(InvalidCountError, match=r"^num_nodes: must be an integer >= 0, got -1"):
        pool.refresh_server_lists([], num_nodes=-1, leader_address=None, now=0.0)
    with pytest.raises(InvalidAddressError, match=r"^leader_address: "):
        pool.refresh_server_lists([], num_nodes=1, leader_address="leader", now=0.0)
    with pytest.raises(InvalidTimeError, match=r"^now: must be a finite number"):
        pool.find_server(float("nan"))
    with pytest.raises(InvalidServerError, match=r"^servers\[1\]: must be a Server"):
        pool.refresh_server_lists([make_server(0), "s1"], 2, None, now=0.0)  # type: ignore[list-item]
    with pytest.raises(InvalidServerError, match=r"^server: "):
        pool.remove_server("")
    with pytest.raises(PoolInputError):
        pool.notify_failed_server("s1", 0.0)  # type: ignore[arg-type]


def test_pool_without_config_uses_defaults() -> None:
    pool = ServerPool(rng=random.Random(0))
    assert pool.config.ejection == EjectionPolicy()
    assert pool.config.client_api_version == ApiVersion(1, 0)
    assert pool.config.ejection.consecutive_failures == 5
    assert pool.config.ejection.base_ejection_time == 30.0
    assert pool.config.ejection.max_ejection_percent == 10
