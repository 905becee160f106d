"""The agent's hash rings: which nodes each named ring holds, and their versions.

Nodes come from two sources. Members that carry the tags `ring` (one or more
ring names, comma-separated) and `service_port` join those rings as
`address:service_port`, like Ringman; the optional tag `ring_weight` sets their
weight. Services that do not gossip are registered through the API; those
registrations are replicated to every agent and resolved last-writer-wins by
(Lamport time, origin agent), with removals kept as tombstones so a late copy of
an old registration cannot bring a node back. When both sources name the same id,
the member wins: it is the live one.

This module is pure: no I/O, time comes in as `now`. The agent broadcasts the
`Registration` values it returns and applies those it receives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controlplane.errors import InvalidArgument
from controlplane.gossip.v1 import ring_pb2
from controlplane.names import NAME_RE, name_or_default
from controlplane.ring import HashRing, RingNode

RING_TAG = "ring"
SERVICE_PORT_TAG = "service_port"
WEIGHT_TAG = "ring_weight"
RING_NAME_RE = NAME_RE
MAX_WEIGHT = 1000
MAX_KEY_BYTES = 1024
MAX_ADDRESS_CHARS = 253
MAX_METADATA_ENTRIES = 16
# Registrations travel in one gossip datagram, so their metadata is bounded like tags.
MAX_METADATA_BYTES = 512
# A bound on replicated state: registrations are for services that cannot gossip.
MAX_REGISTRATIONS = 10_000
# Serf's TombstoneTimeout: how long a removal outlives the registration it removed.
TOMBSTONE_TIMEOUT = 24 * 3600.0


def ring_name(raw: str, field: str = "ring") -> str:
    return name_or_default(raw, field)


def check_key(key: str) -> bytes:
    encoded = key.encode()
    if not 1 <= len(encoded) <= MAX_KEY_BYTES:
        raise InvalidArgument.for_field(
            "key", f"must be 1 to {MAX_KEY_BYTES} bytes of UTF-8, got {len(encoded)}"
        )
    return encoded


def check_weight(weight: int) -> int:
    weight = weight or 1
    if not 1 <= weight <= MAX_WEIGHT:
        raise InvalidArgument.for_field(
            "weight", f"must be 1 to {MAX_WEIGHT} (0 means 1), got {weight}"
        )
    return weight


def check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise InvalidArgument.for_field(
            "metadata", f"must have at most {MAX_METADATA_ENTRIES} entries, got {len(metadata)}"
        )
    size = sum(len(key.encode()) + len(value.encode()) for key, value in metadata.items())
    if size > MAX_METADATA_BYTES:
        raise InvalidArgument.for_field(
            "metadata", f"must be at most {MAX_METADATA_BYTES} bytes in all, got {size}"
        )
    return dict(metadata)


def valid_address(address: str) -> bool:
    """1 to 253 printable ASCII characters, no spaces (host names and IP literals)."""
    return (
        1 <= len(address) <= MAX_ADDRESS_CHARS
        and address.isascii()
        and address.isprintable()
        and not any(c.isspace() for c in address)
    )


def check_address(address: str, port: int) -> str:
    if not valid_address(address):
        raise InvalidArgument.for_field(
            "address",
            f"must be 1 to {MAX_ADDRESS_CHARS} printable ASCII characters without spaces",
        )
    if not 1 <= port <= 65535:
        raise InvalidArgument.for_field("port", f"must be 1 to 65535, got {port}")
    return node_id(address, port)


def node_id(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered node's latest state, as replicated between agents."""

    ring: str
    id: str
    address: str
    port: int
    weight: int
    metadata: Mapping[str, str]
    lamport_time: int
    origin: str
    removed: bool = False

    @property
    def order(self) -> tuple[int, str]:
        """Last writer wins by Lamport time; the origin's name breaks ties."""
        return self.lamport_time, self.origin


@dataclass(frozen=True, slots=True)
class RingMember:
    """A member as the ring directory needs it."""

    name: str
    address: str
    tags: Mapping[str, str]
    alive: bool


@dataclass(frozen=True, slots=True)
class RingEntry:
    """One node of a ring with where it comes from."""

    id: str
    address: str
    port: int
    weight: int
    metadata: Mapping[str, str]
    member_name: str = ""  # empty for registered nodes

    @property
    def registered(self) -> bool:
        return not self.member_name


@dataclass(frozen=True, slots=True)
class RingView:
    """An immutable snapshot of one ring."""

    name: str
    version: int
    entries: tuple[RingEntry, ...]
    ring: HashRing = field(compare=False)
    # Entries by id, for lookups that must not scan the ring.
    by_id: Mapping[str, RingEntry] = field(default_factory=dict, compare=False)

    @property
    def checksum(self) -> int:
        return self.ring.checksum

    def entry(self, node_id: str) -> RingEntry:
        return self.by_id[node_id]


def member_entries(member: RingMember) -> list[tuple[str, RingEntry]]:
    """The (ring, entry) pairs an alive member's tags put it in."""
    if not member.alive:
        return []
    names = [n.strip() for n in member.tags.get(RING_TAG, "").split(",") if n.strip()]
    try:
        port = int(member.tags.get(SERVICE_PORT_TAG, ""))
        weight = int(member.tags.get(WEIGHT_TAG, "1"))
    except ValueError:
        return []
    if not names or not 1 <= port <= 65535 or not 1 <= weight <= MAX_WEIGHT:
        return []
    entry = RingEntry(node_id(member.address, port), member.address, port, weight, {}, member.name)
    return [(name, entry) for name in names if RING_NAME_RE.fullmatch(name)]


class RingDirectory:
    """Every ring this agent knows, rebuilt on each membership or registration change."""

    def __init__(self, origin: str, *, tombstone_timeout: float = TOMBSTONE_TIMEOUT) -> None:
        self._origin = origin
        self._tombstone_timeout = tombstone_timeout
        self._clock = 0
        self._registrations: dict[tuple[str, str], Registration] = {}
        self._removed_at: dict[tuple[str, str], float] = {}
        self._members: dict[str, RingMember] = {}
        self._views: dict[str, RingView] = {}

    # ------------------------------------------------------------- sources

    def set_members(self, members: Iterable[RingMember]) -> list[str]:
        """Replaces the member source; returns the rings whose version changed."""
        self._members = {member.name: member for member in members}
        return self._rebuild()

    def prepare(
        self, ring: str, address: str, port: int, weight: int, metadata: Mapping[str, str]
    ) -> Registration:
        """A local AddNode, not applied yet: the caller broadcasts it, then applies it."""
        return Registration(
            ring,
            node_id(address, port),
            address,
            port,
            weight,
            dict(metadata),
            self._clock + 1,
            self._origin,
        )

    def register(
        self, ring: str, address: str, port: int, weight: int, metadata: Mapping[str, str]
    ) -> Registration:
        """A local AddNode, applied: the registration to broadcast."""
        registration = self.prepare(ring, address, port, weight, metadata)
        self.apply(registration, now=0.0)
        return registration

    def unregister(self, ring: str, node: str, now: float) -> Registration | None:
        """A local RemoveNode; None when no such registered node is live."""
        current = self._registrations.get((ring, node))
        if current is None or current.removed:
            return None
        self._clock += 1
        removal = Registration(
            ring,
            node,
            current.address,
            current.port,
            current.weight,
            {},
            self._clock,
            self._origin,
            removed=True,
        )
        self.apply(removal, now)
        return removal

    def apply(self, registration: Registration, now: float) -> bool:
        """Merges a registration from anywhere; True if it was newer and changed state."""
        return bool(self.apply_many([registration], now))

    def apply_many(self, registrations: Iterable[Registration], now: float) -> list[Registration]:
        """Merges many registrations with one rebuild (a peer's full state, the store
        at startup); returns those that were newer. If the rings cannot be rebuilt
        with them (a registration no ring accepts), nothing is kept."""
        saved = (dict(self._registrations), dict(self._removed_at), self._clock)
        accepted: list[Registration] = []
        for registration in registrations:
            self._clock = max(self._clock, registration.lamport_time)
            key = (registration.ring, registration.id)
            current = self._registrations.get(key)
            if current is not None and current.order >= registration.order:
                continue
            self._registrations[key] = registration
            if registration.removed:
                self._removed_at[key] = now
            else:
                self._removed_at.pop(key, None)
            accepted.append(registration)
        if accepted:
            try:
                self._rebuild()
            except (ValueError, TypeError):
                self._registrations, self._removed_at, self._clock = saved
                raise InvalidArgument.for_field(
                    "registration", "cannot be placed on a ring"
                ) from None
        return accepted

    def registrations(self) -> list[Registration]:
        """Everything to hand a peer in a full state exchange, tombstones included."""
        return sorted(self._registrations.values(), key=lambda r: (r.ring, r.id))

    def expire(self, now: float) -> None:
        """Forgets tombstones older than the tombstone timeout."""
        for key, removed_at in list(self._removed_at.items()):
            if now - removed_at >= self._tombstone_timeout:
                del self._removed_at[key]
                del self._registrations[key]

    # -------------------------------------------------------------- views

    def names(self) -> list[str]:
        return sorted(self._views)

    def view(self, ring: str) -> RingView:
        """The ring's snapshot; a ring nobody has joined is empty at version 0."""
        return self._views.get(ring) or RingView(ring, 0, (), HashRing())

    def is_registered(self, ring: str, node: str) -> bool:
        current = self._registrations.get((ring, node))
        return current is not None and not current.removed

    @property
    def lamport_time(self) -> int:
        return self._clock

    def _rebuild(self) -> list[str]:
        wanted: dict[str, dict[str, RingEntry]] = {}
        for registration in self._registrations.values():
            if not registration.removed:
                wanted.setdefault(registration.ring, {})[registration.id] = RingEntry(
                    registration.id,
                    registration.address,
                    registration.port,
                    registration.weight,
                    registration.metadata,
                )
        for member in self._members.values():
            for ring, entry in member_entries(member):
                wanted.setdefault(ring, {})[entry.id] = entry  # the member wins
        changed = []
        for ring in set(wanted) | set(self._views):
            entries = tuple(sorted(wanted.get(ring, {}).values(), key=lambda e: e.id))
            previous = self._views.get(ring)
            if previous is not None and previous.entries == entries:
                continue
            hash_ring = HashRing.from_nodes(RingNode(e.id, e.weight, e.metadata) for e in entries)
            version = (previous.version if previous else 0) + 1
            self._views[ring] = RingView(
                ring, version, entries, hash_ring, {entry.id: entry for entry in entries}
            )
            changed.append(ring)
        return sorted(changed)


# ------------------------------------------------------------------ wire format


def _to_proto(registration: Registration) -> ring_pb2.RingRegistration:
    return ring_pb2.RingRegistration(
        ring=registration.ring,
        id=registration.id,
        address=registration.address,
        port=registration.port,
        weight=registration.weight,
        metadata=[
            ring_pb2.RingMetadata(key=k, value=v) for k, v in sorted(registration.metadata.items())
        ],
        lamport_time=registration.lamport_time,
        origin=registration.origin,
        removed=registration.removed,
    )


def _from_proto(message: ring_pb2.RingRegistration) -> Registration | None:
    """A registration, or None when it breaks a rule (foreign or hostile input)."""
    if not (
        RING_NAME_RE.fullmatch(message.ring)
        and valid_address(message.address)
        and message.origin
        and 1 <= message.port <= 65535
        and 1 <= message.weight <= MAX_WEIGHT
        and message.id == node_id(message.address, message.port)
    ):
        return None
    return Registration(
        message.ring,
        message.id,
        message.address,
        message.port,
        message.weight,
        {entry.key: entry.value for entry in message.metadata},
        message.lamport_time,
        message.origin,
        message.removed,
    )


def encode_registration(registration: Registration) -> bytes:
    return _to_proto(registration).SerializeToString()


def decode_registration(data: bytes) -> Registration | None:
    try:
        message = ring_pb2.RingRegistration.FromString(data)
    except Exception:  # protobuf DecodeError and friends: hostile or foreign input
        return None
    return _from_proto(message)


def encode_state(registrations: Iterable[Registration]) -> bytes:
    return ring_pb2.RingState(
        registrations=[_to_proto(r) for r in registrations]
    ).SerializeToString()


def decode_state(data: bytes) -> list[Registration] | None:
    try:
        state = ring_pb2.RingState.FromString(data)
    except Exception:  # protobuf DecodeError and friends
        return None
    decoded = (_from_proto(message) for message in state.registrations)
    return [registration for registration in decoded if registration is not None]
