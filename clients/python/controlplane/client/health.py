"""Calls the standard grpc.health.v1.Health/Check without grpcio-health-checking.

The client distribution must not depend on the agent's packages, and registering
a second copy of grpc/health/v1/health.proto in protobuf's default descriptor
pool would clash with grpcio-health-checking when both are installed. So the two
messages are declared in a private descriptor pool (`_health_messages`): same wire
format, no shared registry. `check_health_async` is written once
(`_health_async.py`); the blocking `check_health` is generated from it.
"""

from __future__ import annotations

from controlplane.client._health_async import check_health_async
from controlplane.client._health_messages import HealthStatus
from controlplane.client._health_sync import check_health

__all__ = ["HealthStatus", "check_health", "check_health_async"]
