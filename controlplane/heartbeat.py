"""Heartbeating clients: who heartbeats to this agent, and how often they should.

Nomad's servers give every client a heartbeat TTL that grows with the number of
clients so that the total rate stays near a target (nomad/heartbeat.go:
`RateScaledInterval(MaxHeartbeatsPerSecond, MinHeartbeatTTL, n)` plus a random
stagger of up to one TTL), and forget a client that misses its TTL plus a grace
period. This module keeps that bookkeeping, pure: time comes in as `now`,
randomness from an injected `random.Random`.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

# nomad/config.go DefaultConfig: MaxHeartbeatsPerSecond 50.0, the target total rate.
MAX_HEARTBEATS_PER_SECOND = 50.0
# nomad/config.go DefaultConfig: MinHeartbeatTTL 10s, the shortest interval handed out.
MIN_HEARTBEAT_TTL = 10.0
# nomad/config.go DefaultConfig: HeartbeatGrace 10s, slack before a client is forgotten.
HEARTBEAT_GRACE = 10.0
# A bound on soft state: client ids are chosen by callers.
MAX_CLIENTS = 100_000
# Expired clients are swept at most this often, so a heartbeat costs O(1) however
# many clients there are; listing sweeps first, so nothing stale is ever shown.
SWEEP_INTERVAL = 1.0


def rate_scaled_interval(rate: float, minimum: float, count: int) -> float:
    """Seconds between events so that `count` sources together stay near `rate`
    per second, never below `minimum` (Consul's lib.RateScaledInterval)."""
    if rate <= 0:
        return minimum
    return max(minimum, count / rate)


def heartbeat_ttl(num_clients: int, rng: random.Random) -> float:
    """The interval to hand a client: rate-scaled, plus a stagger in [0, ttl)."""
    ttl = rate_scaled_interval(MAX_HEARTBEATS_PER_SECOND, MIN_HEARTBEAT_TTL, num_clients)
    return ttl + rng.random() * ttl


@dataclass(frozen=True, slots=True)
class HeartbeatClient:
    """What the agent knows of one heartbeating client."""

    client_id: str
    peer: str
    api_version: tuple[int, int] | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    last_seen: float = 0.0
    expires_at: float = 0.0


class HeartbeatTracker:
    """Clients seen recently, each expiring at its TTL plus the grace period."""

    def __init__(self, rng: random.Random, grace: float = HEARTBEAT_GRACE) -> None:
        self._rng = rng
        self._grace = grace
        # Least recently seen first: eviction takes the front.
        self._clients: OrderedDict[str, HeartbeatClient] = OrderedDict()
        self._next_sweep = float("-inf")

    def record(
        self,
        client_id: str,
        peer: str,
        api_version: tuple[int, int] | None,
        metadata: Mapping[str, str],
        now: float,
    ) -> float:
        """Notes a heartbeat; returns the interval the client should wait."""
        if now >= self._next_sweep:
            self.expire(now)
        known = client_id in self._clients
        if not known and len(self._clients) >= MAX_CLIENTS:
            # Refuse to grow without bound; the least recently seen client goes first.
            self._clients.popitem(last=False)
        ttl = heartbeat_ttl(len(self._clients) + (not known), self._rng)
        self._clients[client_id] = HeartbeatClient(
            client_id, peer, api_version, dict(metadata), now, now + ttl + self._grace
        )
        self._clients.move_to_end(client_id)
        return ttl

    def expire(self, now: float) -> list[str]:
        self._next_sweep = now + SWEEP_INTERVAL
        gone = [cid for cid, client in self._clients.items() if client.expires_at <= now]
        for client_id in gone:
            del self._clients[client_id]
        return gone

    def clients(self, now: float) -> list[HeartbeatClient]:
        self.expire(now)
        return sorted(self._clients.values(), key=lambda client: client.client_id)

    def __len__(self) -> int:
        return len(self._clients)
