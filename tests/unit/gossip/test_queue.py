"""TransmitLimitedQueue, ported from memberlist queue_test.go."""

from __future__ import annotations

from controlplane.gossip.formulas import retransmit_limit
from controlplane.gossip.queue import TransmitLimitedQueue


def names(queue: TransmitLimitedQueue) -> list[str | None]:
    # memberlist's orderedView walks from the most to the least sent: the reverse of send order.
    return [item.node for item in reversed(queue.ordered())]


def test_queue_invalidates_by_node():
    queue = TransmitLimitedQueue(1, lambda: 1)
    queue.queue(b"", "test")
    queue.queue(b"", "foo")
    queue.queue(b"", "bar")
    assert len(queue) == 3
    assert names(queue) == ["test", "foo", "bar"]
    queue.queue(b"", "test")
    assert len(queue) == 3
    assert names(queue) == ["foo", "bar", "test"]


def test_get_broadcasts_respects_size_limit():
    queue = TransmitLimitedQueue(3, lambda: 10)
    for index, node in enumerate(["test", "foo", "bar", "baz"], start=1):
        queue.queue(f"{index}. this is a test.".encode(), node)
    assert len(queue.get_broadcasts(2, 80)) == 4
    assert len(queue.get_broadcasts(3, 80)) == 3


def test_get_broadcasts_transmit_limit_and_id_reset():
    queue = TransmitLimitedQueue(1, lambda: 10)
    assert queue.id_gen == 0
    assert retransmit_limit(1, 10) == 2
    for index, node in enumerate(["test", "foo", "bar", "baz"], start=1):
        queue.queue(f"{index}. this is a test.".encode(), node)
    assert queue.id_gen == 4
    assert len(queue.get_broadcasts(3, 80)) == 3
    assert queue.id_gen == 4
    assert len(queue.get_broadcasts(3, 80)) == 3
    assert queue.id_gen == 4
    assert len(queue.get_broadcasts(3, 80)) == 2
    assert queue.id_gen == 0
    assert queue.get_broadcasts(3, 80) == []
    assert queue.id_gen == 0


def test_newest_first():
    queue = TransmitLimitedQueue(1, lambda: 10)
    queue.queue(b"aaaa", "a")
    queue.queue(b"bbbb", "b")
    queue.queue(b"cccc", "c")
    assert queue.get_broadcasts(0, 4) == [b"cccc"]


def test_prune_keeps_newest():
    queue = TransmitLimitedQueue(1, lambda: 10)
    for index, node in enumerate(["test", "foo", "bar", "baz"], start=1):
        queue.queue(f"{index}. this is a test.".encode(), node)
    queue.prune(2)
    assert len(queue) == 2
    assert names(queue) == ["bar", "baz"]


def test_ordering_by_transmits():
    queue = TransmitLimitedQueue(1, lambda: 10)
    for name, transmits in [("node0", 0), ("node1", 10), ("node2", 3), ("node3", 4), ("node4", 7)]:
        queue.queue(name.encode(), name, transmits=transmits)
    assert [item.transmits for item in reversed(queue.ordered())] == [10, 7, 4, 3, 0]


def test_max_depth_prunes_oldest():
    queue = TransmitLimitedQueue(1, lambda: 10, max_depth=3)
    for index in range(10):
        queue.queue(b"x", f"n{index}")
    assert len(queue) == 3
    assert set(names(queue)) == {"n7", "n8", "n9"}


def test_broadcasts_without_node_are_never_invalidated():
    queue = TransmitLimitedQueue(1, lambda: 10)
    queue.queue(b"one")
    queue.queue(b"two")
    assert len(queue) == 2
    queue.invalidate("anything")
    assert len(queue) == 2
