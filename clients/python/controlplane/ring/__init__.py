"""controlplane.ring: a pure, immutable, ketama-compatible consistent-hash ring.

This package owns client-side key placement: :class:`HashRing` snapshots map keys
to node ids exactly as the ring specification in ``docs/ring.md`` describes, so
that processes in any language holding the same members (compare
:attr:`HashRing.checksum`) agree on every key. It uses the standard library only.

    >>> ring = HashRing({"cache-a:11211": 1, "cache-b:11211": 2})
    >>> ring.get_node("user:42") in ring
    True
"""

from controlplane.ring.errors import EmptyRingError
from controlplane.ring.hashring import (
    DEFAULT_RING_SETTINGS,
    MAX_WEIGHT,
    HashRing,
    RingNode,
    RingSettings,
)
from controlplane.ring.ketama import (
    DEFAULT_POINTS_PER_VNODE,
    DEFAULT_VNODES,
    MAX_VNODES,
    LookupRule,
    VnodeFormula,
    key_point,
    vnode_count,
)

__all__ = [
    "DEFAULT_POINTS_PER_VNODE",
    "DEFAULT_RING_SETTINGS",
    "DEFAULT_VNODES",
    "MAX_VNODES",
    "MAX_WEIGHT",
    "EmptyRingError",
    "HashRing",
    "LookupRule",
    "RingNode",
    "RingSettings",
    "VnodeFormula",
    "key_point",
    "vnode_count",
]
