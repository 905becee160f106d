"""The agent's hash rings: which nodes each named ring holds, and their versions.

Nodes come from two sources. Members that carry the tags `ring` (one or more
ring names, comma-separated) and `service_port` join those rings as
`address:service_port`, like Ringman; the optional tag `ring_weight` sets their
weight. Services that do not gossip are registered through the API; those
registrations are replicated to every agent and resolved last-writer-wins by
(Lamport time, origin agent), with removals kept as tombstones so a late copy of
an old registration cannot bring a node back. When both sources name the same id,
the member wins: it is the live one (between two members, the smaller name).
Each ring places keys with its own settings (the agent's `rings` configuration,
for example Ringman's 40 virtual nodes of 3 points); other rings use the defaults.

Changes cost what they touch: every member upsert, member removal or merged
registration marks the (ring, id) pairs it can affect, and each ring with a marked
pair is derived once from its previous snapshot (`HashRing.with_changes`), never
rebuilt from the whole member list. At most `MAX_REGISTRATIONS` live registrations
are kept, whichever path they arrive by; the rest are dropped and counted.

This module is pure: no I/O, time comes in as `now`. The agent broadcasts the
`Registration` values it returns and applies those it receives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from controlplane.errors import InvalidArgument
from controlplane.gossip import codec
from controlplane.gossip.names import NAME_RE, name_or_default, valid_name
from controlplane.ring import DEFAULT_RING_SETTINGS, HashRing, RingNode, RingSettings
from controlplane.wire.v1 import ring_pb2

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
# A whole state holds the live registrations and the tombstones of the removed
# ones; beyond this it is refused rather than merged (each entry costs loop time).
MAX_STATE_REGISTRATIONS = 4 * MAX_REGISTRATIONS
# A registration's Lamport time is believed at most this far above the directory's
# clock when its batch arrives (membership/lamport.py MAX_LAMPORT_CATCH_UP): a new
# agent (clock 0) catches up with any cluster that made fewer than 2**32 ring changes.
MAX_LAMPORT_AHEAD = 2**32
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
class RegistrationMerge:
    """What merging a batch of registrations did."""

    # The registrations that were newer than what the directory held, and kept.
    accepted: list[Registration]
    # The rings whose version changed, sorted.
    changed: list[str]
    # Registrations refused because MAX_REGISTRATIONS live ones are already kept.
    dropped: int


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
    """The (ring, entry) pairs an alive member's tags put it in, each ring once."""
    if not member.alive:
        return []
    names = list(
        dict.fromkeys(n.strip() for n in member.tags.get(RING_TAG, "").split(",") if n.strip())
    )
    try:
        port = int(member.tags.get(SERVICE_PORT_TAG, ""))
        weight = int(member.tags.get(WEIGHT_TAG, "1"))
    except ValueError:
        return []
    if (
        not names
        or not 1 <= port <= 65535
        or not 1 <= weight <= MAX_WEIGHT
        # An entry every ring accepts, so one odd member cannot stall a derivation.
        or not valid_address(member.address)
    ):
        return []
    entry = RingEntry(node_id(member.address, port), member.address, port, weight, {}, member.name)
    return [(name, entry) for name in names if RING_NAME_RE.fullmatch(name)]


def _registration_entry(registration: Registration) -> RingEntry:
    return RingEntry(
        registration.id,
        registration.address,
        registration.port,
        registration.weight,
        registration.metadata,
    )


class RingDirectory:
    """Every ring this agent knows, derived incrementally from members and registrations.

    Sources change through :meth:`update_members` / :meth:`remove_members` (or
    :meth:`set_members`, a full replacement computed as a diff) and
    :meth:`merge_registrations` (or :meth:`apply` / :meth:`apply_many`). Each call
    derives every ring it touched once, bumps the version of exactly the rings
    whose entries changed, and returns their names.
    """

    def __init__(
        self,
        origin: str,
        *,
        tombstone_timeout: float = TOMBSTONE_TIMEOUT,
        max_registrations: int | None = None,
        ring_settings: Mapping[str, RingSettings] | None = None,
    ) -> None:
        self._origin = origin
        # The snapshot of each ring nobody has joined, built with that ring's
        # settings; immutable, so one serves every caller and every derivation.
        self._empty_rings = {
            name: HashRing(settings=settings) for name, settings in (ring_settings or {}).items()
        }
        self._default_empty = HashRing(settings=DEFAULT_RING_SETTINGS)
        self._tombstone_timeout = tombstone_timeout
        # Read at construction, not import, so a deployment (or a test) can lower it.
        self._max_registrations = (
            MAX_REGISTRATIONS if max_registrations is None else max_registrations
        )
        self._clock = 0
        self._registrations: dict[tuple[str, str], Registration] = {}
        self._removed_at: dict[tuple[str, str], float] = {}
        self._live = 0
        self._members: dict[str, RingMember] = {}
        self._member_entries: dict[str, list[tuple[str, RingEntry]]] = {}
        # (ring, id) -> the entries members claim for it, by member name.
        self._claims: dict[tuple[str, str], dict[str, RingEntry]] = {}
        self._views: dict[str, RingView] = {}
        # Ring -> ids whose entry may have changed since the last derivation.
        self._dirty: dict[str, set[str]] = {}
        self.registrations_dropped = 0
        # Registrations refused for a Lamport time too far ahead (see merge_registrations).
        self.registrations_out_of_range = 0

    # ------------------------------------------------------------- sources

    def set_members(self, members: Iterable[RingMember]) -> list[str]:
        """Replaces the member source; returns the rings whose version changed.

        Computed as a diff against the members held: unchanged members cost a
        comparison, and only the rings of changed ones are derived."""
        wanted = {member.name: member for member in members}
        removed = [name for name in self._members if name not in wanted]
        changed = [m for name, m in wanted.items() if self._members.get(name) != m]
        return self.update_members(changed, removed)

    def update_members(
        self, changed: Iterable[RingMember], removed: Iterable[str] = ()
    ) -> list[str]:
        """Upserts the members ``changed`` and forgets the names ``removed`` (removals
        first, so a name in both is kept as given); returns the rings whose version
        changed, sorted."""
        for name in removed:
            self._forget_member(name)
        for member in changed:
            self._upsert_member(member)
        return self._rebuild()

    def remove_members(self, names: Iterable[str]) -> list[str]:
        """Forgets members (reaped ones); returns the rings whose version changed."""
        return self.update_members((), names)

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

    def prepare_removal(self, ring: str, node: str) -> Registration | None:
        """A local RemoveNode, not applied yet (the caller stores it, then applies it);
        None when no such registered node is live."""
        current = self._registrations.get((ring, node))
        if current is None or current.removed:
            return None
        return Registration(
            ring,
            node,
            current.address,
            current.port,
            current.weight,
            {},
            self._clock + 1,
            self._origin,
            removed=True,
        )

    def unregister(self, ring: str, node: str, now: float) -> Registration | None:
        """A local RemoveNode, applied; None when no such registered node is live."""
        removal = self.prepare_removal(ring, node)
        if removal is not None:
            self.apply(removal, now)
        return removal

    def apply(self, registration: Registration, now: float) -> bool:
        """Merges a registration from anywhere; True if it was newer and changed state."""
        return bool(self.merge_registrations([registration], now).accepted)

    def apply_many(self, registrations: Iterable[Registration], now: float) -> list[Registration]:
        """Merges many registrations with one derivation per ring (a peer's full state,
        the store at startup); returns those that were newer and kept."""
        return self.merge_registrations(registrations, now).accepted

    def merge_registrations(
        self, registrations: Iterable[Registration], now: float
    ) -> RegistrationMerge:
        """Merges registrations last-writer-wins, deriving each touched ring once.

        A registration that would add a live one beyond the cap is dropped and
        counted (in the result and in ``registrations_dropped``). Such additions
        are retried, in order, after the rest of the batch, so that the batch's
        tombstones free room first; under the cap, the batch is merged exactly in
        the order given. If the rings cannot be derived with the batch (a
        registration no ring accepts), nothing of it is kept and
        ``InvalidArgument`` is raised."""
        undo: dict[tuple[str, str], tuple[Registration | None, float | None]] = {}
        clock, live = self._clock, self._live
        accepted: list[Registration] = []
        over_cap: list[Registration] = []
        for registration in registrations:
            if registration.lamport_time > clock + MAX_LAMPORT_AHEAD:
                # Believed, a time near 2**64 would win its node for good and make
                # the next local change overflow the wire's uint64.
                self.registrations_out_of_range += 1
                continue
            self._clock = max(self._clock, registration.lamport_time)
            merged = self._merge_one(registration, now, undo)
            if merged is None:
                over_cap.append(registration)
            elif merged:
                accepted.append(registration)
        dropped = 0
        for registration in over_cap:
            merged = self._merge_one(registration, now, undo)
            if merged is None:
                dropped += 1
            elif merged:
                accepted.append(registration)
        self.registrations_dropped += dropped
        changed: list[str] = []
        if accepted:
            try:
                changed = self._rebuild()
            except (ValueError, TypeError):
                for key, (previous, removed_at) in undo.items():
                    if previous is None:
                        del self._registrations[key]
                    else:
                        self._registrations[key] = previous
                    if removed_at is None:
                        self._removed_at.pop(key, None)
                    else:
                        self._removed_at[key] = removed_at
                self._clock, self._live = clock, live
                raise InvalidArgument.for_field(
                    "registration", "cannot be placed on a ring"
                ) from None
        return RegistrationMerge(accepted, changed, dropped)

    def registrations(self) -> list[Registration]:
        """Everything to hand a peer in a full state exchange, tombstones included."""
        return sorted(self._registrations.values(), key=lambda r: (r.ring, r.id))

    def expire(self, now: float) -> None:
        """Forgets tombstones older than the tombstone timeout."""
        for key, removed_at in list(self._removed_at.items()):
            if now - removed_at >= self._tombstone_timeout:
                del self._removed_at[key]
                del self._registrations[key]
                self.state_version += 1

    # Counts changes of the registrations, so their encoded state can be reused
    # while it is unchanged.
    state_version = 0

    # -------------------------------------------------------------- views

    def names(self) -> list[str]:
        return sorted(self._views)

    def settings(self, ring: str) -> RingSettings:
        """The settings ring ``ring`` places keys with (the defaults unless configured)."""
        return self._empty_ring(ring).settings

    def view(self, ring: str) -> RingView:
        """The ring's snapshot; a ring nobody has joined is empty at version 0."""
        return self._views.get(ring) or RingView(ring, 0, (), self._empty_ring(ring))

    def _empty_ring(self, ring: str) -> HashRing:
        return self._empty_rings.get(ring, self._default_empty)

    def is_registered(self, ring: str, node: str) -> bool:
        current = self._registrations.get((ring, node))
        return current is not None and not current.removed

    @property
    def live_registrations(self) -> int:
        """How many registrations are live (not removed); at most ``max_registrations``."""
        return self._live

    @property
    def max_registrations(self) -> int:
        return self._max_registrations

    @property
    def lamport_time(self) -> int:
        return self._clock

    # ----------------------------------------------------------- internals

    def _merge_one(
        self,
        registration: Registration,
        now: float,
        undo: dict[tuple[str, str], tuple[Registration | None, float | None]],
    ) -> bool | None:
        """Merges one registration: True if kept, False if stale, None if it would
        add a live registration beyond the cap. Records what it replaced in ``undo``."""
        key = (registration.ring, registration.id)
        current = self._registrations.get(key)
        if current is not None and current.order >= registration.order:
            return False
        was_live = current is not None and not current.removed
        if not registration.removed and not was_live and self._live >= self._max_registrations:
            return None
        if key not in undo:
            undo[key] = (current, self._removed_at.get(key))
        self._registrations[key] = registration
        self.state_version += 1
        if registration.removed:
            self._removed_at[key] = now
        else:
            self._removed_at.pop(key, None)
        self._live += (not registration.removed) - was_live
        self._mark(registration.ring, registration.id)
        return True

    def _mark(self, ring: str, node: str) -> None:
        dirty = self._dirty.get(ring)
        if dirty is None:
            self._dirty[ring] = {node}
        else:
            dirty.add(node)

    def _upsert_member(self, member: RingMember) -> None:
        self._members[member.name] = member
        entries = member_entries(member)
        if entries == self._member_entries.get(member.name, []):
            return
        self._unclaim(member.name)
        if entries:
            self._member_entries[member.name] = entries
            for ring, entry in entries:
                key = (ring, entry.id)
                claims = self._claims.get(key)
                if claims is None:
                    self._claims[key] = {member.name: entry}
                else:
                    claims[member.name] = entry
                self._mark(ring, entry.id)

    def _forget_member(self, name: str) -> None:
        if self._members.pop(name, None) is not None:
            self._unclaim(name)

    def _unclaim(self, name: str) -> None:
        for ring, entry in self._member_entries.pop(name, ()):
            key = (ring, entry.id)
            claims = self._claims[key]
            del claims[name]
            if not claims:
                del self._claims[key]
            self._mark(ring, entry.id)

    def _entry(self, ring: str, node: str) -> RingEntry | None:
        """The entry (ring, node) resolves to now: a member's, else a live registration's."""
        claims = self._claims.get((ring, node))
        if claims:
            return claims[min(claims)]
        registration = self._registrations.get((ring, node))
        if registration is None or registration.removed:
            return None
        return _registration_entry(registration)

    def _rebuild(self) -> list[str]:
        """Derives every ring with marked ids once; returns those whose version changed.

        Nothing is committed unless every ring derives; on failure the marks stay,
        so a caller that restores its sources leaves the views consistent."""
        dirty, self._dirty = self._dirty, {}
        derived: dict[str, RingView] = {}
        try:
            for ring, nodes in dirty.items():
                view = self._derive(ring, nodes)
                if view is not None:
                    derived[ring] = view
        except BaseException:
            for ring, nodes in dirty.items():
                self._dirty.setdefault(ring, set()).update(nodes)
            raise
        self._views.update(derived)
        return sorted(derived)

    def _derive(self, ring: str, nodes: set[str]) -> RingView | None:
        previous = self._views.get(ring)
        old_by_id: Mapping[str, RingEntry] = previous.by_id if previous is not None else {}
        upserts: dict[str, RingEntry] = {}
        removals: list[str] = []
        for node in nodes:
            entry = self._entry(ring, node)
            current = old_by_id.get(node)
            if entry == current:
                continue
            if entry is None:
                removals.append(node)
            else:
                upserts[node] = entry
        if not upserts and not removals:
            return None
        # Every derivation starts from the ring's empty snapshot, so it inherits the
        # ring's settings.
        old_ring = previous.ring if previous is not None else self._empty_ring(ring)
        hash_ring = old_ring.with_changes(
            [RingNode(e.id, e.weight, e.metadata) for e in upserts.values()], removals
        )
        by_id = dict(old_by_id)
        for node in removals:
            del by_id[node]
        by_id.update(upserts)
        # The hash ring keeps its members in id order: the entries follow it.
        entries = tuple(map(by_id.__getitem__, hash_ring.nodes))
        version = (previous.version if previous is not None else 0) + 1
        return RingView(ring, version, entries, hash_ring, by_id)


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
        and valid_name(message.origin)  # a member name: it reaches logs and the API
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
    message = codec.parse(ring_pb2.RingRegistration, data)
    if message is None:  # hostile or foreign input
        return None
    return _from_proto(message)


def encode_state(registrations: Iterable[Registration]) -> bytes:
    return ring_pb2.RingState(
        registrations=[_to_proto(r) for r in registrations]
    ).SerializeToString()


class StateDecoder:
    """A peer's ring state decoded a slice at a time (see :func:`decode_state`).

    Parsing the message is quick; checking and converting each registration is
    what grows with a ring of thousands of nodes, so a shell calls :meth:`decode_some`
    between yields to its loop until :attr:`done`."""

    def __init__(self, data: bytes) -> None:
        self.registrations: list[Registration] = []
        self.damaged = False
        self._messages: Sequence[ring_pb2.RingRegistration] = ()
        self._position = 0
        state = codec.parse(ring_pb2.RingState, data)
        if state is None:
            self.damaged = True
            return
        if len(state.registrations) > MAX_STATE_REGISTRATIONS:
            self.damaged = True
            return
        self._messages = state.registrations

    @property
    def done(self) -> bool:
        return self.damaged or self._position >= len(self._messages)

    def decode_some(self, limit: int) -> None:
        """Decodes up to `limit` more registrations, dropping those that break a rule."""
        end = min(len(self._messages), self._position + max(limit, 1))
        for index in range(self._position, end):
            registration = _from_proto(self._messages[index])
            if registration is not None:
                self.registrations.append(registration)
        self._position = end


def decode_state(data: bytes) -> list[Registration] | None:
    """A peer's or the store's registrations; None when damaged or beyond
    MAX_STATE_REGISTRATIONS (live ones and tombstones together)."""
    decoder = StateDecoder(data)
    decoder.decode_some(MAX_STATE_REGISTRATIONS)
    return None if decoder.damaged else decoder.registrations
