"""Heartbeating clients: who heartbeats to this agent, and how often they should.

Nomad's servers give every client a heartbeat TTL that grows with the number of
clients so that the total rate stays near a target (nomad/heartbeat.go:
`RateScaledInterval(MaxHeartbeatsPerSecond, MinHeartbeatTTL, n)` plus a random
stagger of up to one TTL), and forget a client that misses its TTL plus a grace
period. This module keeps that bookkeeping, pure: time comes in as `now`,
randomness from an injected `random.Random`.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

# nomad/config.go DefaultConfig: MaxHeartbeatsPerSecond 50.0, the target total rate.
MAX_HEARTBEATS_PER_SECOND = 50.0
# nomad/config.go DefaultConfig: MinHeartbeatTTL 10s, the shortest interval handed out.
MIN_HEARTBEAT_TTL = 10.0
# nomad/config.go DefaultConfig: HeartbeatGrace 10s, slack before a client is forgotten.
HEARTBEAT_GRACE = 10.0
# A bound on soft state: client ids are chosen by callers.
MAX_CLIENTS = 100_000


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


_NO_METADATA: Mapping[str, str] = MappingProxyType({})


class HeartbeatClient(NamedTuple):
    """What the agent knows of one heartbeating client. A named tuple: one is built
    per heartbeat, and a tuple builds several times faster than a frozen dataclass."""

    client_id: str
    peer: str
    api_version: tuple[int, int] | None
    metadata: Mapping[str, str] = _NO_METADATA
    last_seen: float = 0.0
    expires_at: float = 0.0


class HeartbeatTracker:
    """Clients seen recently, each expiring at its TTL plus the grace period.

    Every operation a heartbeat performs is O(1) (amortized) however many clients
    there are: clients wait for expiry in buckets of one second, found through a
    heap of the buckets' seconds, so checking for expired clients only looks at the
    earliest bucket, and a client renewing its heartbeat just moves to another
    bucket. A bucket is emptied but kept until its second passes, so the heap holds
    one entry per second of the longest TTL, never one per heartbeat. The listing
    order (by client id) is brought up to date only when someone lists.
    """

    def __init__(self, rng: random.Random, grace: float = HEARTBEAT_GRACE) -> None:
        self._rng = rng
        self._grace = grace
        # Least recently seen first: eviction takes the front.
        self._clients: OrderedDict[str, HeartbeatClient] = OrderedDict()
        # ceil(expires_at) -> ids of the clients that expire by then.
        self._buckets: dict[int, set[str]] = {}
        self._due: list[int] = []
        # Client ids in order, and the changes not yet merged into it.
        self._sorted: list[str] = []
        self._added: set[str] = set()
        self._removed: set[str] = set()

    def record(
        self,
        client_id: str,
        peer: str,
        api_version: tuple[int, int] | None,
        metadata: Mapping[str, str],
        now: float,
    ) -> float:
        """Notes a heartbeat; returns the interval the client should wait."""
        if self._due and self._due[0] <= now:
            self.expire(now)
        clients = self._clients
        known = clients.get(client_id)
        if known is None and len(clients) >= MAX_CLIENTS:
            # Refuse to grow without bound; the least recently seen client goes first.
            _, evicted = clients.popitem(last=False)
            self._forget(evicted)
        ttl = heartbeat_ttl(len(clients) + (known is None), self._rng)
        client = HeartbeatClient(
            client_id,
            peer,
            api_version,
            dict(metadata) if metadata else _NO_METADATA,
            now,
            now + ttl + self._grace,
        )
        if known is None:
            self._note_added(client_id)
            self._schedule(client)
        else:
            clients.move_to_end(client_id)
            if math.ceil(known.expires_at) != math.ceil(client.expires_at):
                self._unschedule(known)
                self._schedule(client)
        clients[client_id] = client
        return ttl

    def expire(self, now: float) -> list[str]:
        """Forgets the clients whose time is up (at most a second late); O(1) when none is."""
        gone: list[str] = []
        while self._due and self._due[0] <= now:
            for client_id in self._buckets.pop(heapq.heappop(self._due), ()):
                del self._clients[client_id]
                self._note_removed(client_id)
                gone.append(client_id)
        return gone

    def get(self, client_id: str, now: float) -> HeartbeatClient | None:
        """The client, unless it is unknown or expired."""
        client = self._clients.get(client_id)
        return client if client is not None and client.expires_at > now else None

    def client_ids(self, now: float) -> list[str]:
        """Every known client id, sorted; some may have expired within the last second
        (see :meth:`get`). The caller must not modify the list."""
        self.expire(now)
        if self._added or self._removed:
            removed = self._removed
            ids = [cid for cid in self._sorted if cid not in removed]
            # Two sorted runs: the sort merges them in linear time.
            ids.extend(sorted(self._added))
            ids.sort()
            self._sorted = ids
            self._added, self._removed = set(), set()
        return self._sorted

    def clients(self, now: float) -> list[HeartbeatClient]:
        """Every live client, sorted by id."""
        clients = (self.get(client_id, now) for client_id in self.client_ids(now))
        return [client for client in clients if client is not None]

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def expiry_slots(self) -> int:
        """Seconds with clients due to expire (bounded by the longest TTL, not by the
        number of heartbeats); for tests and statistics."""
        return len(self._due)

    def _schedule(self, client: HeartbeatClient) -> None:
        second = math.ceil(client.expires_at)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = set()
            heapq.heappush(self._due, second)
        bucket.add(client.client_id)

    def _unschedule(self, client: HeartbeatClient) -> None:
        # An emptied bucket stays until its second passes: dropping it would let a
        # client that renews often push a new heap entry on every heartbeat.
        self._buckets[math.ceil(client.expires_at)].discard(client.client_id)

    def _forget(self, client: HeartbeatClient) -> None:
        self._unschedule(client)
        self._note_removed(client.client_id)

    def _note_added(self, client_id: str) -> None:
        if client_id in self._removed:
            self._removed.discard(client_id)
        else:
            self._added.add(client_id)

    def _note_removed(self, client_id: str) -> None:
        if client_id in self._added:
            self._added.discard(client_id)
        else:
            self._removed.add(client_id)
