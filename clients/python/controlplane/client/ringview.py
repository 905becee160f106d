"""One immutable client-side ring: a `HashRing` built from a RingSnapshot.

Owned here so the blocking `LiveRing` and the asyncio `AsyncLiveRing` share the
conversion and the lookups (and their errors) exactly; the agent uses the same
conversion of ring settings to and from the wire, so both sides read them alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controlplane.errors import FailedPrecondition, InvalidArgument
from controlplane.ring import (
    DEFAULT_RING_SETTINGS,
    MAX_VNODES,
    EmptyRingError,
    HashRing,
    LookupRule,
    RingNode,
    RingSettings,
    VnodeFormula,
)
from controlplane.ring.ketama import MAX_POINTS_PER_VNODE
from controlplane.v1 import ring_pb2

__all__ = ["RingState", "settings_from_proto", "settings_to_proto"]

_FORMULA_TO_PROTO: Mapping[VnodeFormula, ring_pb2.RingVnodeFormula.ValueType] = {
    VnodeFormula.EXACT: ring_pb2.RING_VNODE_FORMULA_EXACT,
    VnodeFormula.FLOAT64: ring_pb2.RING_VNODE_FORMULA_FLOAT64,
}
_LOOKUP_TO_PROTO: Mapping[LookupRule, ring_pb2.RingLookup.ValueType] = {
    LookupRule.AT_OR_AFTER: ring_pb2.RING_LOOKUP_AT_OR_AFTER,
    LookupRule.AFTER: ring_pb2.RING_LOOKUP_AFTER,
}
# UNSPECIFIED (an agent that predates a field) reads as the default.
_FORMULA_OF: Mapping[int, VnodeFormula] = {
    ring_pb2.RING_VNODE_FORMULA_UNSPECIFIED: VnodeFormula.EXACT,
    **{value: formula for formula, value in _FORMULA_TO_PROTO.items()},
}
_LOOKUP_OF: Mapping[int, LookupRule] = {
    ring_pb2.RING_LOOKUP_UNSPECIFIED: LookupRule.AT_OR_AFTER,
    **{value: rule for rule, value in _LOOKUP_TO_PROTO.items()},
}


def settings_to_proto(settings: RingSettings) -> ring_pb2.RingSettings:
    return ring_pb2.RingSettings(
        vnodes=settings.vnodes,
        points_per_vnode=settings.points_per_vnode,
        vnode_formula=_FORMULA_TO_PROTO[settings.vnode_formula],
        lookup=_LOOKUP_TO_PROTO[settings.lookup],
    )


def settings_from_proto(message: ring_pb2.RingSettings) -> RingSettings | None:
    """The settings a snapshot carries; defaults for fields it lacks (0 or unset),
    None when a value is out of range or unknown (a newer or hostile agent): no
    local ring can then place keys as the agent does."""
    vnodes = message.vnodes or DEFAULT_RING_SETTINGS.vnodes
    points = message.points_per_vnode or DEFAULT_RING_SETTINGS.points_per_vnode
    formula = _FORMULA_OF.get(message.vnode_formula)
    lookup = _LOOKUP_OF.get(message.lookup)
    if vnodes > MAX_VNODES or points > MAX_POINTS_PER_VNODE or formula is None or lookup is None:
        return None
    return RingSettings(vnodes, points, formula, lookup)


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
        """The snapshot's ring, built with its settings. Settings this client cannot
        read leave the defaults in place, and `checksum_matches` is then False."""
        settings = settings_from_proto(snapshot.settings) or DEFAULT_RING_SETTINGS
        ring = HashRing.from_nodes(
            (RingNode(node.id, node.weight or 1, dict(node.metadata)) for node in snapshot.nodes),
            settings=settings,
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
