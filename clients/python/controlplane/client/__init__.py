"""The controlplane Python client (needs only grpcio and protobuf).

`Client` (blocking) and `AsyncClient` (asyncio) call the agents' public API with
failover across agents, background heartbeats, resumable watches and a local
hash ring; errors are the `controlplane.errors` classes. See docs/client.md.

The names below are imported on first use (PEP 562), so that a process that needs
one submodule, such as the agent pinging servers with `controlplane.client.health`,
does not load both clients with it.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from controlplane.client.aio import AsyncClient, AsyncLiveRing, AsyncWatch
    from controlplane.client.common import CHANNEL_OPTIONS, DEFAULT_TIMEOUT, ClientOptions
    from controlplane.client.health import HealthStatus, check_health, check_health_async
    from controlplane.client.idempotency import IDEMPOTENT, is_idempotent
    from controlplane.client.ringview import RingState
    from controlplane.client.sync import Client, LiveRing, Watch
    from controlplane.client.views import (
        EventUpdate,
        LeaderUpdate,
        MemberChangeKind,
        MembersUpdate,
        RingUpdate,
    )

_SOURCES = {
    "AsyncClient": "aio",
    "AsyncLiveRing": "aio",
    "AsyncWatch": "aio",
    "CHANNEL_OPTIONS": "common",
    "DEFAULT_TIMEOUT": "common",
    "ClientOptions": "common",
    "HealthStatus": "health",
    "check_health": "health",
    "check_health_async": "health",
    "IDEMPOTENT": "idempotency",
    "is_idempotent": "idempotency",
    "RingState": "ringview",
    "Client": "sync",
    "LiveRing": "sync",
    "Watch": "sync",
    "EventUpdate": "views",
    "LeaderUpdate": "views",
    "MemberChangeKind": "views",
    "MembersUpdate": "views",
    "RingUpdate": "views",
}

__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_TIMEOUT",
    "IDEMPOTENT",
    "AsyncClient",
    "AsyncLiveRing",
    "AsyncWatch",
    "Client",
    "ClientOptions",
    "EventUpdate",
    "HealthStatus",
    "LeaderUpdate",
    "LiveRing",
    "MemberChangeKind",
    "MembersUpdate",
    "RingState",
    "RingUpdate",
    "Watch",
    "check_health",
    "check_health_async",
    "is_idempotent",
]
assert sorted(__all__) == sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"{__name__}.{source}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))
