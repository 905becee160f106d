"""One immutable client-side ring: a `HashRing` built from a RingSnapshot.

Owned here so the blocking `LiveRing` and the asyncio `AsyncLiveRing` share the
conversion and the lookups (and their errors) exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controlplane.errors import FailedPrecondition, InvalidArgument
from controlplane.ring import EmptyRingError, HashRing, RingNode
from controlplane.v1 import ring_pb2

__all__ = ["RingState"]


@dataclass(frozen=True, slots=True)
class RingState:
    """A ring snapshot and the hash ring that answers lookups for it."""

    snapshot: ring_pb2.RingSnapshot
    ring: HashRing
    nodes: Mapping[str, ring_pb2.RingNode]

    @classmethod
    def empty(cls, name: str) -> RingState:
        return cls(ring_pb2.RingSnapshot(name=name), HashRing(), MappingProxyType({}))

    @classmethod
    def of(cls, snapshot: ring_pb2.RingSnapshot) -> RingState:
        ring = HashRing.from_nodes(
            RingNode(node.id, node.weight or 1, dict(node.metadata)) for node in snapshot.nodes
        )
        return cls(snapshot, ring, MappingProxyType({node.id: node for node in snapshot.nodes}))

    @property
    def checksum_matches(self) -> bool:
        """False if this client places keys differently from the agent (settings differ)."""
        return self.ring.checksum == self.snapshot.checksum

    def get_node(self, key: str | bytes) -> str:
        try:
            return self.ring.get_node(key)
        except EmptyRingError:
            raise FailedPrecondition(
                f"ring {self.snapshot.name!r} has no nodes yet; add nodes or wait for members"
            ) from None
        except ValueError as error:
            raise InvalidArgument.for_field("key", str(error)) from None

    def get_nodes(self, key: str | bytes, n: int) -> list[str]:
        if n < 1:
            raise InvalidArgument.for_field("n", f"must be at least 1, got {n}")
        try:
            nodes = self.ring.get_nodes(key, n)
        except ValueError as error:
            raise InvalidArgument.for_field("key", str(error)) from None
        if not nodes:
            raise FailedPrecondition(
                f"ring {self.snapshot.name!r} has no nodes yet; add nodes or wait for members"
            )
        return nodes
