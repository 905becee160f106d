"""Transmit-limited broadcast queue: what gets piggybacked on outgoing packets.

Each broadcast is sent ``retransmit_mult * ceil(log10(N + 1))`` times. Broadcasts
sent fewer times go first; among equals the longer, then the newer one goes
first (memberlist queue.go). A new broadcast about a member invalidates the
queued one about the same member, so stale state is never spread.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.gossip.formulas import retransmit_limit

# Below every sort-key component (negated lengths and ids): bisects start a range here.
_LOWEST = -(1 << 63)


@dataclass(slots=True)
class Broadcast:
    """One queued message: its encoded bytes and what it invalidates."""

    message: bytes
    # Name of the member the message is about; None for messages that invalidate nothing.
    node: str | None
    transmits: int = 0
    id: int = 0
    sort_key: tuple[int, int, int] = field(default=(0, 0, 0), compare=False)


class TransmitLimitedQueue:
    """Broadcasts ordered by (fewest transmits, longest, newest)."""

    def __init__(
        self,
        retransmit_mult: int,
        num_nodes: Callable[[], int],
        max_depth: int = 4096,
    ) -> None:
        self.retransmit_mult = retransmit_mult
        self._num_nodes = num_nodes
        self._max_depth = max_depth
        self._items: list[tuple[tuple[int, int, int], Broadcast]] = []
        self._by_node: dict[str, Broadcast] = {}
        self._id_gen = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def id_gen(self) -> int:
        return self._id_gen

    def queue(self, message: bytes, node: str | None = None, transmits: int = 0) -> None:
        """Queue ``message``; a previous broadcast about ``node`` is dropped."""
        if node is not None:
            old = self._by_node.pop(node, None)
            if old is not None:
                self._remove(old)
        self._id_gen += 1
        item = Broadcast(message, node, transmits, self._id_gen)
        self._insert(item)
        if node is not None:
            self._by_node[node] = item
        if len(self._items) > self._max_depth:
            self.prune(self._max_depth)

    def invalidate(self, node: str) -> None:
        """Drop the queued broadcast about ``node``, if any."""
        old = self._by_node.pop(node, None)
        if old is not None:
            self._remove(old)

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Messages fitting in ``limit`` bytes with ``overhead`` bytes of framing each.

        Within each transmit count, the largest message that still fits goes next
        (the newest among equals), as memberlist's queue picks from its btree. A
        bisect finds it, so a packet costs O(picked · log depth) however deep the
        queue is, not a scan past thousands of messages too large for the room left.
        """
        items = self._items
        if not items:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, self._num_nodes())
        picked: list[Broadcast] = []
        used = 0
        transmits = items[0][0][0]
        while items:
            free = limit - used - overhead
            if free <= 0:
                break
            index = bisect_left(items, (transmits, -free, _LOWEST), key=_first)
            if index < len(items) and items[index][0][0] == transmits:
                _key, item = items.pop(index)
                picked.append(item)
                used += overhead + len(item.message)
                continue
            # Nothing more of this transmit count fits: on to the next count queued.
            index = bisect_left(items, (transmits + 1, _LOWEST, _LOWEST), key=_first)
            if index >= len(items):
                break
            transmits = items[index][0][0]
        out: list[bytes] = []
        for item in picked:
            out.append(item.message)
            item.transmits += 1
            if item.transmits >= transmit_limit:
                if item.node is not None and self._by_node.get(item.node) is item:
                    del self._by_node[item.node]
            else:
                self._insert(item)
        if not items:
            self._id_gen = 0
        return out

    def prune(self, max_retain: int) -> None:
        """Drop the oldest and most sent broadcasts until at most ``max_retain`` remain."""
        while len(self._items) > max_retain:
            _key, item = self._items.pop()
            if item.node is not None and self._by_node.get(item.node) is item:
                del self._by_node[item.node]

    def ordered(self) -> list[Broadcast]:
        """Queued broadcasts in send order (the next one sent first)."""
        return [item for _key, item in self._items]

    def reset(self) -> None:
        self._items.clear()
        self._by_node.clear()
        self._id_gen = 0

    def _insert(self, item: Broadcast) -> None:
        item.sort_key = (item.transmits, -len(item.message), -item.id)
        insort(self._items, (item.sort_key, item), key=_first)

    def _remove(self, item: Broadcast) -> None:
        # Sort keys are unique (ids are), so a bisect finds the exact entry.
        index = bisect_left(self._items, item.sort_key, key=_first)
        if index < len(self._items) and self._items[index][1] is item:
            del self._items[index]


def _first(entry: tuple[tuple[int, int, int], Broadcast]) -> tuple[int, int, int]:
    return entry[0]
