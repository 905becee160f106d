"""Builders shared by the server-pool tests."""

from __future__ import annotations

import random

from controlplane.pool import ApiVersion, EjectionPolicy, PoolConfig, Server, ServerPool

NO_EJECTION = EjectionPolicy(consecutive_failures=None)


def make_server(
    index: int,
    *,
    api_version: ApiVersion | None = None,
    draining: bool = False,
) -> Server:
    """Server ``s{index:02d}`` at ``10.0.{index // 250}.{index % 250 + 1}:7946``."""
    return Server(
        name=f"s{index:02d}",
        address=f"10.0.{index // 250}.{index % 250 + 1}:7946",
        api_version=api_version,
        draining=draining,
    )


def make_pool(
    *,
    seed: int = 1,
    ejection: EjectionPolicy | None = None,
    client_api_version: ApiVersion | None = None,
    seed_addresses: tuple[str, ...] = (),
) -> ServerPool:
    config = PoolConfig(
        client_api_version=client_api_version or ApiVersion(1, 0),
        ejection=ejection or EjectionPolicy(),
        seed_addresses=seed_addresses,
    )
    return ServerPool(config, rng=random.Random(seed))


def names(servers: tuple[Server, ...] | list[Server]) -> list[str]:
    return [server.name for server in servers]
