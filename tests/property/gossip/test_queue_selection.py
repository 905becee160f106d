"""Property test: the queue's bisecting packet fill picks what a full scan would.

The reference is the plain reading of memberlist's rule: walk the queue in send
order (fewest transmits, then longest, then newest) and take every message that
still fits. The queue finds the same messages by bisecting, so a deep queue costs
O(picked · log depth) per packet.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.gossip.queue import TransmitLimitedQueue

PROFILE = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

OVERHEAD = 2

operations = st.lists(
    st.one_of(
        # Queue a message of this size about member "m<k>" (or about nobody).
        st.tuples(
            st.just("queue"),
            st.integers(min_value=1, max_value=90),
            st.one_of(st.none(), st.integers(min_value=0, max_value=12)),
        ),
        # Fill a packet of this many bytes.
        st.tuples(st.just("fill"), st.integers(min_value=0, max_value=300), st.none()),
    ),
    max_size=80,
)


def reference_fill(queue: TransmitLimitedQueue, limit: int) -> list[bytes]:
    """The messages a scan in send order takes for a packet of `limit` bytes."""
    taken: list[bytes] = []
    used = 0
    for broadcast in queue.ordered():
        size = OVERHEAD + len(broadcast.message)
        if used + size <= limit:
            taken.append(broadcast.message)
            used += size
    return taken


@PROFILE
@given(operations)
def test_fill_takes_what_a_scan_in_send_order_takes(ops: list[tuple[str, int, int | None]]) -> None:
    queue = TransmitLimitedQueue(retransmit_mult=2, num_nodes=lambda: 20)
    serial = 0
    for kind, number, node in ops:
        if kind == "queue":
            serial += 1
            # Distinct contents, so a message identifies its broadcast.
            message = serial.to_bytes(4, "big") + b"x" * number
            queue.queue(message, None if node is None else f"m{node}")
            continue
        expected = reference_fill(queue, number)
        before = {b.message: b.transmits for b in queue.ordered()}
        got = queue.get_broadcasts(OVERHEAD, number)
        assert got == expected
        # Each message sent once more; those at the limit leave the queue.
        after = {b.message: b.transmits for b in queue.ordered()}
        for message in got:
            assert after.get(message, before[message] + 1) == before[message] + 1
        assert set(after) <= set(before)
