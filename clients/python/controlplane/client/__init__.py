"""The controlplane Python client (needs only grpcio and protobuf).

`Client` (blocking) and `AsyncClient` (asyncio) call the agents' public API with
failover across agents, background heartbeats, resumable watches and a local
hash ring; errors are the `controlplane.errors` classes. See docs/client.md.
"""

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
