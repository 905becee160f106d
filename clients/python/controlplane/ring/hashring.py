"""The immutable consistent-hash ring snapshot.

This module owns :class:`HashRing`: building the sorted continuum of virtual-node
points from a set of weighted members, deriving a new ring from an old one at the
cost of what changed (``with_changes``), looking keys up on it (``get_node``,
``get_nodes``) and the membership checksum that two processes compare to know
they hold the same view. Placement is ketama-compatible; ``docs/ring.md`` is the
normative description and :mod:`controlplane.ring.ketama` holds the hashing
arithmetic. The module is pure: no I/O, no clocks, no global state.
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Final, NoReturn, TypeGuard, TypeVar

from controlplane.ring.errors import EmptyRingError
from controlplane.ring.ketama import (
    DEFAULT_POINTS_PER_VNODE,
    DEFAULT_VNODES,
    MAX_POINTS_PER_VNODE,
    LookupRule,
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

# Points and their owners live in machine-integer arrays, not lists of objects:
# copying or splicing them is a memory copy with no reference counts to touch,
# which is what lets a derived ring reuse an 800,000-point continuum in about a
# millisecond. Owners are member slot numbers (see HashRing._slots).
_POINT_TYPECODE: Final = "I" if array("I").itemsize >= 4 else "L"

# A derived ring hashes and places only the points that appear or disappear, a
# few Python steps each; a full build hashes every virtual node and sorts once, at
# about a third of that cost per point. Measured at 3,000 nodes, the two break
# even when about a quarter of the continuum changes; past that, build in full.
_FULL_BUILD_SHARE: Final = 0.25

# Edit kinds of a splice; inserts sort before a removal at the same position.
_INSERT: Final = 0
_REMOVE: Final = 1

_weight_of: Final = attrgetter("weight")

_A = TypeVar("_A")
_B = TypeVar("_B")


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
    sliced into (4 for ketama, 3 for Python ``hash_ring`` and Go ``serialx/hashring``),
    ``vnode_formula`` how weights turn into virtual-node counts, and ``lookup``
    which point owns a key that lands exactly on one.
    """

    vnodes: int = DEFAULT_VNODES
    points_per_vnode: int = DEFAULT_POINTS_PER_VNODE
    vnode_formula: VnodeFormula = VnodeFormula.EXACT
    lookup: LookupRule = LookupRule.AT_OR_AFTER

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
        if not isinstance(self.lookup, LookupRule):
            raise TypeError(f"lookup must be a LookupRule, got {type(self.lookup).__name__}")

    def checksum_header(self) -> str:
        """Return the first line hashed into :attr:`HashRing.checksum` (without newline).

        ``lookup`` is named only when it is not the default, so that the checksums
        of every ring built before the setting existed stay what they were.
        """
        header = (
            f"ketama-md5 vnodes={self.vnodes} points_per_vnode={self.points_per_vnode} "
            f"vnode_formula={self.vnode_formula.value}"
        )
        if self.lookup is not LookupRule.AT_OR_AFTER:
            header += f" lookup={self.lookup.value}"
        return header


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
    derive new rings with :meth:`with_changes`, :meth:`with_node` and
    :meth:`without_node`. Lookups are safe from any number of threads because
    nothing ever changes after construction: derived rings share no list that is
    written after it is built.
    """

    __slots__ = (
        "_bucket_owner",
        "_bucket_shift",
        "_checksum",
        "_free_slots",
        "_ids",
        "_lines",
        "_nodes",
        "_owners",
        "_owning_node_count",
        "_points",
        "_search",
        "_settings",
        "_slot_of",
        "_slots",
        "_total_weight",
        "_vnode_counts",
        "_weight_census",
    )

    _nodes: Mapping[str, RingNode]
    _settings: RingSettings
    # bisect_left or bisect_right over the points: the settings' lookup rule.
    _search: Callable[[array[int], int], int]
    _vnode_counts: Mapping[str, int]
    _points: array[int]
    # The slot of each point's member, plus a wrap-around sentinel (the first one).
    _owners: array[int]
    # Slot numbers stay with a member for the life of a lineage of derived rings, so
    # inserting a member never renumbers the others' points. A freed slot holds ""
    # until a newcomer takes it.
    _slots: list[str]
    _slot_of: dict[str, int]
    _free_slots: list[int]
    _owning_node_count: int
    _bucket_shift: int
    _bucket_owner: list[str | None]
    _checksum: int
    # Member ids in id order, and their "<id> <weight>\n" checksum lines alongside,
    # so a derived ring splices both instead of sorting and formatting every member.
    _ids: list[str]
    _lines: list[str]
    # How many members have each weight, and their sum: vnode counts depend on the
    # weight only, so a change is priced per weight instead of per member.
    _weight_census: dict[int, int]
    _total_weight: int

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

        census: dict[int, int] = {}
        for member in nodes.values():
            census[member.weight] = census.get(member.weight, 0) + 1
        total_weight = sum(member.weight for member in nodes.values())
        count_of = _counts_by_weight(census, total_weight, len(nodes), settings)
        vnode_counts = _counts_in_id_order(nodes, count_of)

        # Ties between equal points of different nodes go to the smaller node id,
        # so the continuum depends only on the member set, never on the order in
        # which members were learnt. A fresh build numbers slots in id order, so
        # sorting (point << rank_bits | slot) as one int is sorting by (point, id),
        # and ints sort several times faster than tuples.
        ids = list(nodes)
        rank_bits = max(1, (len(ids) - 1).bit_length())
        ppv = settings.points_per_vnode
        keys = [
            point << rank_bits | slot
            for slot, node_id in enumerate(ids)
            for index in range(vnode_counts[node_id])
            for point in vnode_points(node_id, index, ppv)
        ]
        keys.sort()
        mask = (1 << rank_bits) - 1
        points = array(_POINT_TYPECODE, [key >> rank_bits for key in keys])
        owners = array(_POINT_TYPECODE, [key & mask for key in keys])
        if owners:
            # A key past the last point wraps to the first; the sentinel makes the
            # wrap an ordinary index instead of a branch on every lookup.
            owners.append(owners[0])

        bucket_shift, bucket_owner = _bucket_table(points, owners, ids)
        self._assign(
            settings=settings,
            nodes=nodes,
            ids=ids,
            slots=ids.copy(),
            slot_of=dict(zip(ids, range(len(ids)), strict=True)),
            free_slots=[],
            lines=[f"{member.id} {member.weight}\n" for member in nodes.values()],
            census=census,
            total_weight=total_weight,
            vnode_counts=vnode_counts,
            owning_node_count=_owning_node_count(census, count_of),
            points=points,
            owners=owners,
            bucket_shift=bucket_shift,
            bucket_owner=bucket_owner,
        )

    def _assign(
        self,
        *,
        settings: RingSettings,
        nodes: dict[str, RingNode],
        ids: list[str],
        slots: list[str],
        slot_of: dict[str, int],
        free_slots: list[int],
        lines: list[str],
        census: dict[int, int],
        total_weight: int,
        vnode_counts: dict[str, int],
        owning_node_count: int,
        points: array[int],
        owners: array[int],
        bucket_shift: int,
        bucket_owner: list[str | None],
    ) -> None:
        set_attr = object.__setattr__
        set_attr(self, "_nodes", MappingProxyType(nodes))
        set_attr(self, "_settings", settings)
        # The bucket table needs no variant: a bucket without a point sends every
        # key in it to the same next point under either rule.
        set_attr(
            self,
            "_search",
            bisect_right if settings.lookup is LookupRule.AFTER else bisect_left,
        )
        set_attr(self, "_vnode_counts", MappingProxyType(vnode_counts))
        set_attr(self, "_points", points)
        set_attr(self, "_owners", owners)
        set_attr(self, "_owning_node_count", owning_node_count)
        set_attr(self, "_bucket_shift", bucket_shift)
        set_attr(self, "_bucket_owner", bucket_owner)
        set_attr(self, "_ids", ids)
        set_attr(self, "_slots", slots)
        set_attr(self, "_slot_of", slot_of)
        set_attr(self, "_free_slots", free_slots)
        set_attr(self, "_lines", lines)
        set_attr(self, "_weight_census", census)
        set_attr(self, "_total_weight", total_weight)
        set_attr(self, "_checksum", _checksum(settings, lines))

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
        return self.with_changes([member])

    def without_node(self, node_id: str) -> HashRing:
        """Return a new ring without ``node_id``; raises ``KeyError`` if it is not a member."""
        return self.with_changes(remove=[node_id])

    def with_changes(self, add: Iterable[RingNode] = (), remove: Iterable[str] = ()) -> HashRing:
        """Return a new ring with the members ``add`` added (or replaced, by id) and the
        ids ``remove`` removed.

        The result is identical to :meth:`from_nodes` of the resulting member set
        (points, lookups, checksum) but costs what changed: only the virtual nodes
        that appear or disappear are hashed, and the continuum is spliced, not
        sorted. When unequal weights re-scale so many members' counts that most of
        the continuum changes, the ring is built in full instead. Returns this ring
        when nothing changes. Raises ``KeyError`` for a removed id that is not a
        member and ``ValueError`` for an id listed twice or both added and removed.
        """
        if isinstance(add, RingNode) or isinstance(remove, str):
            raise TypeError("add must be an iterable of RingNode and remove an iterable of ids")
        nodes = self._nodes
        upserts: dict[str, RingNode] = {}
        for member in add:
            node_id = _node_sort_key(member)
            if node_id in upserts:
                raise ValueError(f"node {node_id!r} is listed twice")
            upserts[node_id] = member
        removals: set[str] = set()
        for node_id in remove:
            if not isinstance(node_id, str):
                raise TypeError(f"node id must be str, got {type(node_id).__name__}")
            if node_id in upserts:
                raise ValueError(f"node {node_id!r} is both added and removed")
            if node_id in removals:
                raise ValueError(f"node {node_id!r} is listed twice")
            if node_id not in nodes:
                raise KeyError(node_id)
            removals.add(node_id)
        for node_id in [
            node_id for node_id, member in upserts.items() if nodes.get(node_id) == member
        ]:
            del upserts[node_id]
        if not upserts and not removals:
            return self
        return self._derive(upserts, removals)

    def _derive(self, upserts: dict[str, RingNode], removals: set[str]) -> HashRing:
        settings = self._settings
        old_nodes = self._nodes
        old_counts = self._vnode_counts

        # Members that stay as they are, by weight: only their counts can move.
        staying = dict(self._weight_census)
        total_weight = self._total_weight
        replaced = [old_nodes[node_id] for node_id in upserts if node_id in old_nodes]
        for member in (*(old_nodes[node_id] for node_id in removals), *replaced):
            _census_drop(staying, member.weight)
            total_weight -= member.weight
        census = dict(staying)
        for member in upserts.values():
            census[member.weight] = census.get(member.weight, 0) + 1
            total_weight += member.weight
        node_count = len(old_nodes) - len(removals) + len(upserts) - len(replaced)
        old_count_of = _counts_by_weight(
            self._weight_census, self._total_weight, len(old_nodes), settings
        )
        count_of = _counts_by_weight(census, total_weight, node_count, settings)
        rescaled = {
            weight: (old_count_of[weight], count_of[weight])
            for weight in staying
            if old_count_of[weight] != count_of[weight]
        }

        merged = dict(old_nodes)
        for node_id in removals:
            del merged[node_id]
        merged.update(upserts)

        # Price the change in virtual nodes before hashing any of them.
        edited = sum(old_counts[node_id] for node_id in removals)
        for node_id, member in upserts.items():
            edited += abs(count_of[member.weight] - old_counts.get(node_id, 0))
        for weight, (before, after) in rescaled.items():
            edited += staying[weight] * abs(after - before)
        ppv = settings.points_per_vnode
        new_point_count = ppv * sum(count_of[weight] * n for weight, n in census.items())
        if edited * ppv > _FULL_BUILD_SHARE * max(len(self._points), new_point_count):
            return HashRing.from_nodes(merged.values(), settings=settings)

        added: list[tuple[int, str]] = []
        removed: list[tuple[int, str]] = []
        for node_id in removals:
            _vnode_span(removed, node_id, 0, old_counts[node_id], ppv)
        for node_id, member in upserts.items():
            before, after = old_counts.get(node_id, 0), count_of[member.weight]
            if after > before:
                _vnode_span(added, node_id, before, after, ppv)
            else:
                _vnode_span(removed, node_id, after, before, ppv)
        if rescaled:
            # Counts grow and shrink at the end: vnode i of a member is always the
            # same name, so only the indexes between the old and new count move.
            for node_id, member in old_nodes.items():
                counts = rescaled.get(member.weight)
                if counts is None or node_id in upserts or node_id in removals:
                    continue
                before, after = counts
                if after > before:
                    _vnode_span(added, node_id, before, after, ppv)
                else:
                    _vnode_span(removed, node_id, after, before, ppv)
        added.sort()
        removed.sort()

        old_slots = self._slots
        slots = old_slots.copy()
        slot_of = dict(self._slot_of)
        free_slots = self._free_slots.copy()
        for node_id in removals:
            slot = slot_of.pop(node_id)
            slots[slot] = ""
            free_slots.append(slot)
        for node_id in upserts:
            if node_id not in slot_of:
                if free_slots:
                    slot = free_slots.pop()
                    slots[slot] = node_id
                else:
                    slot = len(slots)
                    slots.append(node_id)
                slot_of[node_id] = slot

        # Edits are found on the old continuum (old slot numbers) and sorted by
        # position, then inserts before removals, then point, then id.
        points, owners = self._points, self._owners
        size = len(points)
        edits: list[tuple[int, int, int, str, int]] = []
        previous: tuple[int, str] | None = None
        position = 0
        for pair in removed:
            point, owner = pair
            # Removals come sorted, so each search starts where the last one ended;
            # a member's own duplicate points are separate entries, the second copy
            # being the next match after the first.
            position = position + 1 if pair == previous else bisect_left(points, point, position)
            while old_slots[owners[position]] != owner:
                position += 1
            edits.append((position, _REMOVE, point, owner, 0))
            previous = pair
        position = 0
        for point, owner in added:
            position = bisect_left(points, point, position)
            # Equal points keep the smaller id first, as the full build's sort does.
            while (
                position < size
                and points[position] == point
                and old_slots[owners[position]] < owner
            ):
                position += 1
            edits.append((position, _INSERT, point, owner, slot_of[owner]))
        edits.sort()
        new_points, new_owners, landed = _splice_continuum(points, owners, size, edits)
        if new_owners:
            # A key past the last point wraps to the first; the sentinel makes the
            # wrap an ordinary index instead of a branch on every lookup.
            new_owners[-1] = new_owners[0]

        ids = self._ids
        id_edits: list[tuple[int, int, str, str]] = []
        for node_id in removals:
            id_edits.append((bisect_left(ids, node_id), _REMOVE, node_id, ""))
        for node_id, member in upserts.items():
            position = bisect_left(ids, node_id)
            id_edits.append((position, _INSERT, node_id, f"{node_id} {member.weight}\n"))
            if node_id in old_nodes:
                id_edits.append((position, _REMOVE, node_id, ""))
        id_edits.sort()
        new_ids: list[str] = []
        new_lines: list[str] = []
        _splice(ids, self._lines, len(ids), id_edits, new_ids, new_lines)

        new_nodes = dict(zip(new_ids, map(merged.__getitem__, new_ids), strict=True))
        vnode_counts = _counts_in_id_order(new_nodes, count_of)

        bucket_shift = self._bucket_shift
        if not size or not new_points or _bucket_shift_for(len(new_points)) != bucket_shift:
            bucket_shift, bucket_owner = _bucket_table(new_points, new_owners, slots)
        else:
            bucket_owner = self._bucket_owner.copy()
            _refresh_buckets(
                bucket_owner,
                bucket_shift,
                new_points,
                new_owners,
                slots,
                edits,
                landed,
                wrapped_owner_changed=slots[new_owners[0]] != old_slots[owners[0]],
            )

        ring = HashRing.__new__(HashRing)
        ring._assign(
            settings=settings,
            nodes=new_nodes,
            ids=new_ids,
            slots=slots,
            slot_of=slot_of,
            free_slots=free_slots,
            lines=new_lines,
            census=census,
            total_weight=total_weight,
            vnode_counts=vnode_counts,
            owning_node_count=_owning_node_count(census, count_of),
            points=new_points,
            owners=new_owners,
            bucket_shift=bucket_shift,
            bucket_owner=bucket_owner,
        )
        return ring

    # -- lookups -------------------------------------------------------------------

    def get_node(self, key: str | bytes) -> str:
        """Return the id of the node that owns ``key``.

        The owner is the node of the first point at or clockwise after the key's
        point (strictly after it with ``LookupRule.AFTER``). Raises
        :class:`EmptyRingError` on an empty ring and ``ValueError`` on an empty key.
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
            return self._slots[self._owners[self._search(self._points, point)]]
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
        slots = self._slots
        start = self._search(points, _unpack_point(md5(data).digest())[0])
        first = owners[start]
        found = [slots[first]]
        seen = {first}
        point_count = len(points)
        index = start
        while len(found) < wanted:
            index += 1
            if index >= point_count:
                index = 0
            owner = owners[index]
            if owner not in seen:
                seen.add(owner)
                found.append(slots[owner])
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
        # zip stops at the last point, before the owners' wrap-around sentinel.
        return list(zip(self._points, map(self._slots.__getitem__, self._owners), strict=False))

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


def _checksum(settings: RingSettings, lines: list[str]) -> int:
    """SHA-256 of the header line and the members' "<id> <weight>" lines in id order."""
    text = f"{settings.checksum_header()}\n{''.join(lines)}"
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _counts_by_weight(
    census: Mapping[int, int], total_weight: int, node_count: int, settings: RingSettings
) -> dict[int, int]:
    """The virtual-node count of a member of each weight present."""
    return {
        weight: vnode_count(
            weight, total_weight, node_count, settings.vnodes, settings.vnode_formula
        )
        for weight in census
    }


def _counts_in_id_order(nodes: dict[str, RingNode], count_of: Mapping[int, int]) -> dict[str, int]:
    # Every member's count is its weight's: one C-level pass over the members.
    counts = map(count_of.__getitem__, map(_weight_of, nodes.values()))
    return dict(zip(nodes, counts, strict=True))


def _owning_node_count(census: Mapping[int, int], count_of: Mapping[int, int]) -> int:
    # A member owns points exactly when its count is positive (points_per_vnode >= 1).
    return sum(members for weight, members in census.items() if count_of[weight])


def _census_drop(census: dict[int, int], weight: int) -> None:
    remaining = census[weight] - 1
    if remaining:
        census[weight] = remaining
    else:
        del census[weight]


def _vnode_span(
    out: list[tuple[int, str]], node_id: str, first: int, end: int, points_per_vnode: int
) -> None:
    """Append the (point, id) pairs of virtual nodes ``first`` .. ``end - 1`` of a node."""
    for index in range(first, end):
        for point in vnode_points(node_id, index, points_per_vnode):
            out.append((point, node_id))


def _splice(
    first: Sequence[_A],
    second: Sequence[_B],
    size: int,
    edits: list[tuple[int, int, _A, _B]],
    out_first: MutableSequence[_A],
    out_second: MutableSequence[_B],
) -> None:
    """Apply sorted edits to two parallel sequences, into the empty ``out_*`` ones.

    An edit ``(i, _INSERT, a, b)`` puts ``a`` and ``b`` before old entry ``i``;
    ``(i, _REMOVE, ...)`` drops old entry ``i``. Only the first ``size`` entries are
    read. Each run between edits is one slice, copied in C, so the cost is one
    Python step per edit plus a memory copy, never a step per unchanged entry.
    """
    start = 0
    for position, kind, value_first, value_second in edits:
        if position > start:
            out_first.extend(first[start:position])
            out_second.extend(second[start:position])
        if kind == _INSERT:
            out_first.append(value_first)
            out_second.append(value_second)
            start = position
        else:
            start = position + 1
    out_first.extend(first[start:size])
    out_second.extend(second[start:size])


def _splice_continuum(
    points: array[int],
    owners: array[int],
    size: int,
    edits: list[tuple[int, int, int, str, int]],
) -> tuple[array[int], array[int], list[int]]:
    """:func:`_splice` for the continuum's arrays, with room for the owners' sentinel.

    The output is allocated once and every run between edits is one memoryview
    copy (a memcpy without an intermediate slice object). Also returns, per edit,
    where it landed in the output: the inserted point's index, or the index of the
    point that follows a removed one. An edit is ``(position, kind, point, id,
    slot)``; the id only orders inserts on equal points and is not read here.
    """
    landed: list[int] = []
    inserted = sum(1 for edit in edits if edit[1] == _INSERT)
    length = size + inserted - (len(edits) - inserted)
    new_points = array(_POINT_TYPECODE, [0]) * length
    new_owners = array(_POINT_TYPECODE, [0]) * (length + 1 if length else 0)
    with (
        memoryview(points) as points_in,
        memoryview(owners) as owners_in,
        memoryview(new_points) as points_out,
        memoryview(new_owners) as owners_out,
    ):
        start = 0
        out = 0
        for position, kind, point, _, slot in edits:
            run = position - start
            if run > 0:
                points_out[out : out + run] = points_in[start:position]
                owners_out[out : out + run] = owners_in[start:position]
                out += run
            landed.append(out)
            if kind == _INSERT:
                points_out[out] = point
                owners_out[out] = slot
                out += 1
                start = position
            else:
                start = position + 1
        run = size - start
        points_out[out : out + run] = points_in[start:size]
        owners_out[out : out + run] = owners_in[start:size]
    return new_points, new_owners, landed


def _bucket_shift_for(point_count: int) -> int:
    bits = (point_count * _SLOTS_PER_POINT - 1).bit_length()
    return 32 - max(_MIN_BUCKET_BITS, min(_MAX_BUCKET_BITS, bits))


def _bucket_table(
    points: Sequence[int], owners: Sequence[int], slots: list[str]
) -> tuple[int, list[str | None]]:
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
    shift = _bucket_shift_for(len(points))
    table: list[str | None] = [None] * (1 << (32 - shift))
    _fill_buckets(table, shift, points, owners, slots, [[0, len(table) - 1, 0]])
    return shift, table


def _refresh_buckets(
    table: list[str | None],
    shift: int,
    points: Sequence[int],
    owners: Sequence[int],
    slots: list[str],
    edits: list[tuple[int, int, int, str, int]],
    landed: list[int],
    *,
    wrapped_owner_changed: bool,
) -> None:
    """Update a table in place after the continuum edits ``edits`` (see
    :func:`_splice_continuum`, which says where each one ``landed``).

    A bucket's slot depends on whether a point lies in it and on the first point
    at or after its start, so a changed point ``p`` can only alter the buckets from
    that of the point before it (in the new continuum) through its own; the
    buckets past the last point wrap to the first point, so they change when the
    first owner does. ``points``, ``owners`` and ``slots`` are the new ring's.
    """
    # [first bucket, last bucket, index of a point in the first bucket (or 0)]
    ranges: list[list[int]] = []
    for (_, _, point, _, _), index in zip(edits, landed, strict=True):
        low, hint = (points[index - 1] >> shift, index - 1) if index else (0, 0)
        high = point >> shift
        # Edits come in continuum order, so ranges only grow or start anew.
        if ranges and low <= ranges[-1][1] + 1:
            if high > ranges[-1][1]:
                ranges[-1][1] = high
        else:
            ranges.append([low, high, hint])
    if wrapped_owner_changed:
        low = points[-1] >> shift
        if ranges and low <= ranges[-1][1] + 1:
            ranges[-1][1] = len(table) - 1
        else:
            ranges.append([low, len(table) - 1, len(points) - 1])
    _fill_buckets(table, shift, points, owners, slots, ranges)


def _fill_buckets(
    table: list[str | None],
    shift: int,
    points: Sequence[int],
    owners: Sequence[int],
    slots: list[str],
    ranges: list[list[int]],
) -> None:
    """Recompute the buckets of each ``[first, last, hint]`` range of a non-empty
    continuum's table, in order; ``hint`` is the index of a point in bucket
    ``first`` (or 0 when ``first`` is 0), where the scan for that range starts.

    One loop over every range, not a call per range: after a large change there
    are many short ranges, and a call each would cost as much as the filling.
    """
    point_count = len(points)
    width = 1 << shift
    for first, last, hint in ranges:
        index = hint
        for bucket in range(first, last + 1):
            start = bucket << shift
            while index < point_count and points[index] < start:
                index += 1
            if index < point_count and points[index] < start + width:
                table[bucket] = None
            else:
                # owners[point_count] is the wrap-around sentinel (the first owner).
                table[bucket] = slots[owners[index]]
