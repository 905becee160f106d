"""The heartbeat client table: bounded, expiring, and O(1) per heartbeat.

A heartbeat must never walk the table of clients, whatever their number, and
listing must show exactly the clients whose TTL plus grace has not run out,
sorted by id, however clients come, renew, expire and get evicted.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.heartbeat import tracker as heartbeat
from controlplane.heartbeat.tracker import HEARTBEAT_GRACE, MIN_HEARTBEAT_TTL, HeartbeatTracker


class CountingTable(OrderedDict[str, Any]):
    """The tracker's client table, counting full walks over it."""

    walks = 0

    def __iter__(self) -> Any:
        CountingTable.walks += 1
        return super().__iter__()

    def items(self) -> Any:
        CountingTable.walks += 1
        return super().items()

    def values(self) -> Any:
        CountingTable.walks += 1
        return super().values()


def test_no_heartbeat_walks_the_client_table() -> None:
    tracker = HeartbeatTracker(random.Random(0))
    tracker._clients = CountingTable()
    CountingTable.walks = 0
    for index in range(20_000):
        tracker.record(f"c{index}", "p", None, {}, now=index / 1000)
    # Heartbeats over several minutes, clients renewing and some expiring.
    for step in range(5_000):
        now = 20.0 + step * 0.1
        tracker.record(f"c{step}", "p", None, {}, now=now)
    assert CountingTable.walks == 0
    assert len(tracker) < 20_000  # those that stopped heartbeating expired


def test_a_client_heartbeating_in_a_loop_cannot_grow_the_expiry_queue() -> None:
    tracker = HeartbeatTracker(random.Random(0))
    for step in range(50_000):
        tracker.record("busy", "p", None, {}, now=step * 0.001)
    # One entry per second a client may expire in, never one per heartbeat.
    assert tracker.expiry_slots <= 2 * MIN_HEARTBEAT_TTL + HEARTBEAT_GRACE + 52
    assert len(tracker) == 1


def test_an_expired_client_leaves_the_table_within_a_second() -> None:
    tracker = HeartbeatTracker(random.Random(0))
    ttl = tracker.record("a", "p", None, {}, now=0.0)
    expires = ttl + HEARTBEAT_GRACE
    assert tracker.get("a", expires - 0.01) is not None
    assert tracker.get("a", expires) is None
    assert tracker.clients(expires) == []
    tracker.expire(expires + 1.0)
    assert len(tracker) == 0
    assert tracker.expiry_slots == 0


ops = st.lists(
    st.one_of(
        st.tuples(st.just("beat"), st.integers(min_value=0, max_value=12)),
        st.tuples(st.just("wait"), st.floats(min_value=0.0, max_value=15.0)),
        st.tuples(st.just("list"), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(ops, st.sampled_from([4, 100]))
def test_listing_matches_a_model(ops: list[tuple[str, Any]], capacity: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(heartbeat, "MAX_CLIENTS", capacity)
        tracker = HeartbeatTracker(random.Random(0))
        # client id -> (last_seen, expires_at); least recently seen first.
        model: OrderedDict[str, tuple[float, float]] = OrderedDict()
        now = 0.0
        for kind, value in ops:
            if kind == "wait":
                now += value
            elif kind == "beat":
                client_id = f"c{value:02d}"
                # The table lets go of an expired client within the second after.
                for gone in [c for c, (_, expires) in model.items() if math.ceil(expires) <= now]:
                    del model[gone]
                if client_id not in model and len(model) >= capacity:
                    model.popitem(last=False)
                ttl = tracker.record(client_id, "p", None, {}, now=now)
                model.pop(client_id, None)
                model[client_id] = (now, now + ttl + HEARTBEAT_GRACE)
            live = sorted(c for c, (_, expires) in model.items() if expires > now)
            listed = tracker.clients(now)
            assert [c.client_id for c in listed] == live
            assert all(c.last_seen == model[c.client_id][0] for c in listed)
