"""The immutable consistent-hash ring snapshot.

This module owns :class:`HashRing`: building the sorted continuum of virtual-node
points from a set of weighted members, looking keys up on it (``get_node``,
``get_nodes``) and the membership checksum that two processes compare to know
they hold the same view. Placement is ketama-compatible; ``docs/ring.md`` is the
normative description and :mod:`controlplane.ring.ketama` holds the hashing
arithmetic. The module is pure: no I/O, no clocks, no global state.
"""

from __future__ import annotations

import hashlib
import struct
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, NoReturn, TypeGuard

from controlplane.ring.errors import EmptyRingError
from controlplane.ring.ketama import (
    DEFAULT_POINTS_PER_VNODE,
    DEFAULT_VNODES,
    MAX_POINTS_PER_VNODE,
    VnodeFormula,
    key_bytes,
    md5,
    vnode_count,
    vnode_points,
)

__all__ = [
    "DEFAULT_RING_SETTINGS",
    "MAX_WEIGHT",
    "HashRing",
    "RingNode",
    "RingSettings",
]

# Weights travel as unsigned 32-bit integers in the API and keep every sum exact in
# IEEE-754 doubles (needed by VnodeFormula.FLOAT64 and by JavaScript peers).
MAX_WEIGHT: Final = 2**32 - 1

_EMPTY_METADATA: Final[Mapping[str, str]] = MappingProxyType({})

# Characters that may not appear in a node id: ASCII control characters and the
# space. The checksum serialises members as "<id> <weight>\n" lines, so forbidding
# the separators keeps that encoding unambiguous.
_FORBIDDEN_ID_CHARS: Final = frozenset(chr(c) for c in [*range(0x21), 0x7F])

# The lookup accelerator has one slot per bucket of the 32-bit point space. Sized
# at four to eight slots per point, about 80% of buckets hold no point, and a key
# falling in such a bucket is answered by one list index without a binary search.
_MIN_BUCKET_BITS: Final = 8
_MAX_BUCKET_BITS: Final = 18
_SLOTS_PER_POINT: Final = 4

# Bound once at import: the key point is digest bytes 0-3, little-endian.
_unpack_point: Final = struct.Struct("<I").unpack_from


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass, but True is not a meaningful weight or count.
    return isinstance(value, int) and not isinstance(value, bool)


def _node_sort_key(member: RingNode) -> str:
    if not isinstance(member, RingNode):
        raise TypeError(f"expected RingNode, got {type(member).__name__}")
    return member.id


def _check_node_id(node_id: object) -> None:
    if not isinstance(node_id, str):
        raise TypeError(f"node id must be str, got {type(node_id).__name__}")
    if not node_id:
        raise ValueError("node id must not be empty")
    if not _FORBIDDEN_ID_CHARS.isdisjoint(node_id):
        raise ValueError(f"node id {node_id!r} contains a space or control character")
    try:
        node_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"node id {node_id!r} is not valid Unicode text") from None


def _check_weight(node_id: str, weight: object) -> None:
    if not _is_int(weight):
        raise TypeError(f"weight of node {node_id!r} must be an int, got {type(weight).__name__}")
    if not 1 <= weight <= MAX_WEIGHT:
        raise ValueError(f"weight of node {node_id!r} must be from 1 to {MAX_WEIGHT}, got {weight}")


@dataclass(frozen=True, slots=True)
class RingSettings:
    """Parameters of the continuum; every process sharing a ring must use the same ones.

    ``vnodes`` is the virtual-node count of a node of average weight,
    ``points_per_vnode`` how many 32-bit points each virtual node's MD5 digest is
    sliced into (4 for ketama, 3 for Python ``hash_ring``), and ``vnode_formula``
    how weights turn into virtual-node counts.
    """

    vnodes: int = DEFAULT_VNODES
    points_per_vnode: int = DEFAULT_POINTS_PER_VNODE
    vnode_formula: VnodeFormula = VnodeFormula.EXACT

    def __post_init__(self) -> None:
        if not _is_int(self.vnodes) or self.vnodes < 1:
            raise ValueError(f"vnodes must be a positive integer, got {self.vnodes!r}")
        if not _is_int(self.points_per_vnode) or not (
            1 <= self.points_per_vnode <= MAX_POINTS_PER_VNODE
        ):
            raise ValueError(
                f"points_per_vnode must be an integer from 1 to {MAX_POINTS_PER_VNODE}, "
                f"got {self.points_per_vnode!r}"
            )
        if not isinstance(self.vnode_formula, VnodeFormula):
            raise TypeError(
                f"vnode_formula must be a VnodeFormula, got {type(self.vnode_formula).__name__}"
            )

    def checksum_header(self) -> str:
        """Return the first line hashed into :attr:`HashRing.checksum` (without newline)."""
        return (
            f"ketama-md5 vnodes={self.vnodes} points_per_vnode={self.points_per_vnode} "
            f"vnode_formula={self.vnode_formula.value}"
        )


DEFAULT_RING_SETTINGS: Final = RingSettings()


@dataclass(frozen=True, slots=True)
class RingNode:
    """One ring member: its id, its weight and opaque metadata kept alongside.

    Metadata (for example a service port) travels with the member but never
    influences placement or the checksum.
    """

    id: str
    weight: int = 1
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_node_id(self.id)
        _check_weight(self.id, self.weight)
        metadata = dict(self.metadata)
        for name, value in metadata.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"metadata of node {self.id!r} must map str to str")
        # A private copy behind a read-only view, so the caller's dict can change
        # without changing this snapshot.
        object.__setattr__(self, "metadata", MappingProxyType(metadata))

    def __hash__(self) -> int:
        # The generated hash would try to hash the read-only metadata view itself.
        return hash((self.id, self.weight, frozenset(self.metadata.items())))

    def __reduce__(self) -> tuple[Any, ...]:
        # A read-only mapping view cannot be pickled; the plain dict it wraps can.
        return (RingNode, (self.id, self.weight, dict(self.metadata)))


class HashRing:
    """An immutable ketama-compatible consistent-hash ring.

    Construct it from ``{node_id: weight}`` or an iterable of node ids (weight 1);
    derive new rings with :meth:`with_node` and :meth:`without_node`. Lookups are
    safe from any number of threads because nothing ever changes after
    construction.
    """

    __slots__ = (
        "_bucket_owner",
        "_bucket_shift",
        "_checksum",
        "_nodes",
        "_owners",
        "_owning_node_count",
        "_points",
        "_settings",
        "_vnode_counts",
    )

    _nodes: Mapping[str, RingNode]
    _settings: RingSettings
    _vnode_counts: Mapping[str, int]
    _points: list[int]
    _owners: list[str]
    _owning_node_count: int
    _bucket_shift: int
    _bucket_owner: list[str | None]
    _checksum: int

    def __init__(
        self,
        nodes: Mapping[str, int] | Iterable[str] = (),
        *,
        metadata: Mapping[str, Mapping[str, str]] | None = None,
        settings: RingSettings = DEFAULT_RING_SETTINGS,
    ) -> None:
        if isinstance(nodes, str | bytes):
            raise TypeError("nodes must be a mapping of id to weight or an iterable of ids")
        weights: dict[str, int] = {}
        if isinstance(nodes, Mapping):
            weights.update(nodes)
        else:
            for node_id in nodes:
                if node_id in weights:
                    raise ValueError(f"node {node_id!r} is listed twice")
                weights[node_id] = 1
        metadata = metadata or {}
        unknown = set(metadata) - set(weights)
        if unknown:
            raise ValueError(f"metadata given for unknown nodes: {sorted(unknown)!r}")
        members = [
            RingNode(node_id, weight, metadata.get(node_id, _EMPTY_METADATA))
            for node_id, weight in weights.items()
        ]
        self._build(members, settings)

    @classmethod
    def from_nodes(
        cls, nodes: Iterable[RingNode], *, settings: RingSettings = DEFAULT_RING_SETTINGS
    ) -> HashRing:
        """Build a ring from :class:`RingNode` values (ids must be unique)."""
        ring = cls.__new__(cls)
        ring._build(list(nodes), settings)
        return ring

    def _build(self, members: list[RingNode], settings: RingSettings) -> None:
        if not isinstance(settings, RingSettings):
            raise TypeError(f"settings must be RingSettings, got {type(settings).__name__}")
        nodes: dict[str, RingNode] = {}
        for member in sorted(members, key=_node_sort_key):
            if member.id in nodes:
                raise ValueError(f"node {member.id!r} is listed twice")
            nodes[member.id] = member

        total_weight = sum(member.weight for member in nodes.values())
        vnode_counts = {
            node_id: vnode_count(
                member.weight,
                total_weight,
                len(nodes),
                settings.vnodes,
                settings.vnode_formula,
            )
            for node_id, member in nodes.items()
        }

        # Ties between equal points of different nodes go to the smaller node id,
        # so the continuum depends only on the member set, never on the order in
        # which members were learnt.
        continuum = sorted(
            (point, node_id)
            for node_id, count in vnode_counts.items()
            for index in range(count)
            for point in vnode_points(node_id, index, settings.points_per_vnode)
        )
        points = [point for point, _ in continuum]
        owners = [node_id for _, node_id in continuum]
        if owners:
            # A key past the last point wraps to the first; the sentinel makes the
            # wrap an ordinary index instead of a branch on every lookup.
            owners.append(owners[0])

        bucket_shift, bucket_owner = _bucket_table(points, owners)
        set_attr = object.__setattr__
        set_attr(self, "_nodes", MappingProxyType(nodes))
        set_attr(self, "_settings", settings)
        set_attr(self, "_vnode_counts", MappingProxyType(vnode_counts))
        set_attr(self, "_points", points)
        set_attr(self, "_owners", owners)
        set_attr(self, "_owning_node_count", len(set(owners)))
        set_attr(self, "_bucket_shift", bucket_shift)
        set_attr(self, "_bucket_owner", bucket_owner)
        set_attr(self, "_checksum", _checksum(nodes.values(), settings))

    # -- immutability --------------------------------------------------------------

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"HashRing is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"HashRing is immutable; cannot delete {name!r}")

    # -- derived rings -------------------------------------------------------------

    def with_node(
        self, node_id: str, weight: int = 1, metadata: Mapping[str, str] | None = None
    ) -> HashRing:
        """Return a new ring that also holds ``node_id``; an existing member is replaced."""
        member = RingNode(node_id, weight, metadata if metadata is not None else _EMPTY_METADATA)
        others = [node for other_id, node in self._nodes.items() if other_id != node_id]
        return HashRing.from_nodes([*others, member], settings=self._settings)

    def without_node(self, node_id: str) -> HashRing:
        """Return a new ring without ``node_id``; raises ``KeyError`` if it is not a member."""
        if node_id not in self._nodes:
            raise KeyError(node_id)
        others = [node for other_id, node in self._nodes.items() if other_id != node_id]
        return HashRing.from_nodes(others, settings=self._settings)

    # -- lookups -------------------------------------------------------------------

    def get_node(self, key: str | bytes) -> str:
        """Return the id of the node that owns ``key``.

        The owner is the node of the first point at or clockwise after the key's
        point. Raises :class:`EmptyRingError` on an empty ring and ``ValueError``
        on an empty key.
        """
        # This is the hot path of every client: the statements below are the
        # whole per-key cost, so the helpers of key_point() are inlined.
        if key.__class__ is str:
            data = key.encode()
        elif isinstance(key, bytes):
            data = key
        else:
            data = key_bytes(key)
        if not data:
            raise ValueError("key must not be empty")
        point: int = _unpack_point(md5(data).digest())[0]
        owner = self._bucket_owner[point >> self._bucket_shift]
        if owner is not None:
            return owner
        try:
            return self._owners[bisect_left(self._points, point)]
        except IndexError:
            raise EmptyRingError() from None

    def get_nodes(self, key: str | bytes, n: int) -> list[str]:
        """Return up to ``n`` distinct node ids for ``key``, walking clockwise.

        The first id is :meth:`get_node`'s answer; the others are the next
        distinct owners met clockwise, so they serve as replicas. When ``n``
        exceeds the number of nodes that own points, every such node is returned
        (nodes whose weight earns zero virtual nodes own no keys and are never
        returned). Raises ``ValueError`` if ``n < 1`` or the key is empty and
        :class:`EmptyRingError` on an empty ring.
        """
        if not _is_int(n):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        data = key_bytes(key)
        points = self._points
        if not points:
            raise EmptyRingError()
        owners = self._owners
        wanted = min(n, self._owning_node_count)
        start = bisect_left(points, _unpack_point(md5(data).digest())[0])
        found = [owners[start]]
        seen = {owners[start]}
        point_count = len(points)
        index = start
        while len(found) < wanted:
            index += 1
            if index >= point_count:
                index = 0
            owner = owners[index]
            if owner not in seen:
                seen.add(owner)
                found.append(owner)
        return found

    # -- introspection -------------------------------------------------------------

    @property
    def checksum(self) -> int:
        """An order-independent fingerprint of the settings, member ids and weights.

        The first 8 bytes, big-endian, of SHA-256 over the settings header line
        followed by one ``"<id> <weight>"`` line per member in id order (see
        docs/ring.md). Equal checksums mean equal placement of every key.
        """
        return self._checksum

    @property
    def settings(self) -> RingSettings:
        """The settings this ring was built with."""
        return self._settings

    @property
    def nodes(self) -> Mapping[str, RingNode]:
        """The members by id, in id order (read-only)."""
        return self._nodes

    @property
    def weights(self) -> dict[str, int]:
        """Each member's weight by id, in id order."""
        return {node_id: node.weight for node_id, node in self._nodes.items()}

    @property
    def vnode_counts(self) -> Mapping[str, int]:
        """Each member's virtual-node count by id, in id order (read-only)."""
        return self._vnode_counts

    @property
    def point_count(self) -> int:
        """The number of points on the continuum."""
        return len(self._points)

    def metadata(self, node_id: str) -> Mapping[str, str]:
        """Return the metadata of member ``node_id``; raises ``KeyError`` if absent."""
        return self._nodes[node_id].metadata

    def points(self) -> list[tuple[int, str]]:
        """Return the continuum as sorted ``(point, node_id)`` pairs."""
        return list(zip(self._points, self._owners, strict=False))

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashRing):
            return NotImplemented
        return self._settings == other._settings and self._nodes == other._nodes

    def __hash__(self) -> int:
        return hash((self._settings, self._checksum))

    def __repr__(self) -> str:
        return (
            f"HashRing(nodes={len(self._nodes)}, points={len(self._points)}, "
            f"checksum=0x{self._checksum:016x})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from members on unpickling; the derived arrays are cheap to recompute.
        return (_rebuild, (list(self._nodes.values()), self._settings))


def _rebuild(nodes: list[RingNode], settings: RingSettings) -> HashRing:
    return HashRing.from_nodes(nodes, settings=settings)


def _checksum(members: Iterable[RingNode], settings: RingSettings) -> int:
    lines = [settings.checksum_header()]
    lines.extend(f"{member.id} {member.weight}" for member in sorted(members, key=_node_sort_key))
    digest = hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _bucket_table(points: list[int], owners: list[str]) -> tuple[int, list[str | None]]:
    """Build the lookup accelerator: per bucket, its owner if no point falls inside.

    Bucket ``b`` covers points ``b << shift`` up to ``((b + 1) << shift) - 1``.
    When no continuum point lies in that range, every key point in it resolves to
    the same next point, whose owner is stored; otherwise the slot is ``None``
    and the lookup falls back to a binary search. The table changes speed only,
    never an answer.
    """
    if not points:
        # One empty slot per bucket sends every lookup to the binary search, which
        # then reports the empty ring.
        return 32 - _MIN_BUCKET_BITS, [None] * (1 << _MIN_BUCKET_BITS)
    bits = (len(points) * _SLOTS_PER_POINT - 1).bit_length()
    bits = max(_MIN_BUCKET_BITS, min(_MAX_BUCKET_BITS, bits))
    shift = 32 - bits
    table: list[str | None] = []
    index = 0
    point_count = len(points)
    for bucket in range(1 << bits):
        start = bucket << shift
        while index < point_count and points[index] < start:
            index += 1
        if index < point_count and points[index] < start + (1 << shift):
            table.append(None)
        else:
            # owners[point_count] is the wrap-around sentinel (the first owner).
            table.append(owners[index])
    return shift, table
