"""The controlplane Python client (needs only grpcio and protobuf)."""

from controlplane.client.health import HealthStatus, check_health, check_health_async

__all__ = ["HealthStatus", "check_health", "check_health_async"]
