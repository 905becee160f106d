"""Nomad's heartbeat TTL scaling and the client tracker."""

from __future__ import annotations

import random

import pytest

from controlplane.heartbeat import tracker as heartbeat
from controlplane.heartbeat.tracker import (
    HEARTBEAT_GRACE,
    MIN_HEARTBEAT_TTL,
    HeartbeatTracker,
    heartbeat_ttl,
    rate_scaled_interval,
)


@pytest.mark.parametrize(
    ("rate", "minimum", "count", "expected"),
    [
        # Consul lib/cluster_test.go TestRateScaledInterval: min 1s, rate 1/s.
        (1.0, 1.0, 0, 1.0),
        (1.0, 1.0, 1, 1.0),
        (1.0, 1.0, 2, 2.0),
        (1.0, 1.0, 3, 3.0),
        (1.0, 1.0, 4, 4.0),
        (1.0, 1.0, 5, 5.0),
        (0.0, 1.0, 5, 1.0),
        # Nomad's numbers: 50 heartbeats/s, at least 10 s.
        (50.0, 10.0, 1, 10.0),
        (50.0, 10.0, 500, 10.0),
        (50.0, 10.0, 501, 10.02),
        (50.0, 10.0, 10_000, 200.0),
        (50.0, 10.0, 100_000, 2000.0),
    ],
)
def test_rate_scaled_interval(rate: float, minimum: float, count: int, expected: float) -> None:
    assert rate_scaled_interval(rate, minimum, count) == pytest.approx(expected)


def test_ttl_is_staggered_within_one_interval() -> None:
    rng = random.Random(3)
    ttls = [heartbeat_ttl(10, rng) for _ in range(1000)]
    assert all(MIN_HEARTBEAT_TTL <= ttl < 2 * MIN_HEARTBEAT_TTL for ttl in ttls)
    assert max(ttls) - min(ttls) > MIN_HEARTBEAT_TTL / 2  # it really spreads


def test_ttl_grows_with_the_number_of_clients() -> None:
    rng = random.Random(1)
    assert min(heartbeat_ttl(5000, rng) for _ in range(100)) >= 100.0


def test_clients_expire_after_ttl_plus_grace() -> None:
    tracker = HeartbeatTracker(random.Random(0))
    ttl = tracker.record("a", "ipv4:127.0.0.1:5000", (1, 0), {"zone": "z"}, now=0.0)
    assert [c.client_id for c in tracker.clients(now=ttl + HEARTBEAT_GRACE - 0.01)] == ["a"]
    assert tracker.clients(now=ttl + HEARTBEAT_GRACE) == []


def test_a_heartbeat_renews_the_client() -> None:
    tracker = HeartbeatTracker(random.Random(0))
    tracker.record("a", "p", None, {}, now=0.0)
    ttl = tracker.record("a", "p", None, {}, now=25.0)
    clients = tracker.clients(now=25.0 + ttl)
    assert [(c.client_id, c.last_seen) for c in clients] == [("a", 25.0)]


def test_clients_are_listed_sorted_by_id() -> None:
    tracker = HeartbeatTracker(random.Random(0))
    for client_id in ("c", "a", "b"):
        tracker.record(client_id, "p", None, {}, now=0.0)
    assert [c.client_id for c in tracker.clients(now=1.0)] == ["a", "b", "c"]


def test_heartbeat_table_evicts_the_least_recently_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heartbeat, "MAX_CLIENTS", 3)
    tracker = HeartbeatTracker(random.Random(0))
    for index, client in enumerate(("a", "b", "c")):
        tracker.record(client, "p", None, {}, now=float(index))
    tracker.record("a", "p", None, {}, now=3.0)  # a is recent again
    tracker.record("d", "p", None, {}, now=4.0)  # table full: b, least recent, goes
    assert [c.client_id for c in tracker.clients(now=5.0)] == ["a", "c", "d"]
