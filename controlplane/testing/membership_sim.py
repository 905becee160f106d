"""Simulated clusters of :class:`Membership` layers (the Serf layer over the gossip core).

:class:`MembershipSimCluster` is a :class:`SimCluster` whose members are driven
through their ``Membership``; it records every ``MemberEvent`` and ``UserEvent``
per member and keeps each member's snapshot file in memory (applying
``SnapshotRecord`` effects as the shell would), so a test can restart a member
from its own snapshot.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from controlplane.gossip.config import GossipConfig
from controlplane.gossip.keyring import Keyring
from controlplane.gossip.state import Address
from controlplane.membership import (
    ChannelDelivery,
    ChannelStateReceived,
    EventType,
    MemberEvent,
    MemberInfo,
    Membership,
    MembershipConfig,
    MemberStatus,
    SnapshotRecord,
    SnapshotState,
    UserEvent,
)
from controlplane.testing.sim import SimCluster, SimMember


@dataclass(frozen=True, slots=True)
class _StartOptions:
    tags: Mapping[str, str]
    snapshot: SnapshotState | None


class MembershipSimCluster(SimCluster):
    """N ``Membership`` layers on a simulated network; see the module docstring."""

    def __init__(
        self,
        config: GossipConfig | None = None,
        membership_config: MembershipConfig | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(config, **kwargs)  # type: ignore[arg-type]
        self.membership_config = membership_config or MembershipConfig()
        self.layers: dict[str, Membership] = {}
        # Every membership effect a member reported, with the time: (now, effect).
        self.member_events: dict[str, list[tuple[float, MemberEvent]]] = {}
        self.user_events: dict[str, list[tuple[float, UserEvent]]] = {}
        # The snapshot file of each member, as its shell would have written it.
        self.snapshot_files: dict[str, bytearray] = {}
        # Subsystem channel messages and states each member received.
        self.channel_events: dict[str, list[ChannelDelivery | ChannelStateReceived]] = {}
        self._options = _StartOptions({}, None)

    # ------------------------------------------------------------------ building

    def _make_member(self, name: str, address: Address, meta: bytes) -> SimMember:
        keyring = None
        if self._keys:
            nonce_rng = random.Random(self._rng.getrandbits(64))
            keyring = Keyring(self._keys, nonce_source=nonce_rng.randbytes)
        layer = Membership(
            self.config,
            self.membership_config,
            name,
            address,
            tags=self._options.tags,
            rng=random.Random(self._rng.getrandbits(64)),
            now=self.now,
            keyring=keyring,
            label=self._label,
            snapshot=self._options.snapshot,
        )
        self.layers[name] = layer
        self.member_events.setdefault(name, [])
        self.user_events.setdefault(name, [])
        self.snapshot_files.setdefault(name, bytearray())
        self.channel_events.setdefault(name, [])
        return SimMember(name, address, layer.node, layer=layer)

    def start(
        self,
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        seeds: Sequence[str] = (),
        snapshot: SnapshotState | None = None,
    ) -> Membership:
        """Start (or restart) a member; with ``snapshot`` it rejoins the snapshot's members."""
        self._options = _StartOptions(dict(tags or {}), snapshot)
        try:
            self.add_node(name, seeds=seeds)
        finally:
            self._options = _StartOptions({}, None)
        layer = self.layers[name]
        if snapshot is not None and not seeds:
            self._apply(self.members[name], layer.rejoin(self.now))
        return layer

    # ------------------------------------------------------------------ API calls

    def fire(self, name: str, event: str, payload: bytes, *, coalesce: bool = False) -> int:
        member = self.members[name]
        ltime, effects = self.layers[name].fire_user_event(event, payload, coalesce, self.now)
        self._apply(member, effects)
        return ltime

    def update_tags(
        self, name: str, set_tags: Mapping[str, str], delete: Iterable[str] = ()
    ) -> None:
        member = self.members[name]
        self._apply(member, self.layers[name].update_tags(set_tags, delete, self.now))

    def send(self, name: str, channel: str, payload: bytes) -> None:
        """A subsystem message broadcast from ``name``."""
        self.layers[name].send(channel, payload, self.now)
        self._reschedule(self.members[name])

    def force_leave(self, name: str, target: str, *, prune: bool = False) -> None:
        member = self.members[name]
        self._apply(member, self.layers[name].force_leave(target, prune, self.now))

    # ------------------------------------------------------------------ observation

    def status(self, observer: str, subject: str) -> MemberStatus | None:
        info = self.layers[observer].member(subject)
        return None if info is None else info.status

    def all_status(
        self, subject: str, statuses: Collection[MemberStatus | None], observers: Iterable[str]
    ) -> bool:
        """Every observer sees ``subject`` in one of ``statuses`` (None: not known at all)."""
        return all(self.status(name, subject) in statuses for name in observers)

    def event_members(self, observer: str, type_: EventType) -> list[MemberInfo]:
        """Every member named in ``observer``'s events of ``type_``, in order."""
        return [
            info
            for _at, event in self.member_events[observer]
            if event.type is type_
            for info in event.members
        ]

    # ------------------------------------------------------------------ effects

    def _apply(self, member: SimMember, effects: Sequence[object]) -> None:
        name = member.name
        for effect in effects:
            if isinstance(effect, MemberEvent):
                self.member_events[name].append((self.now, effect))
            elif isinstance(effect, UserEvent):
                self.user_events[name].append((self.now, effect))
            elif isinstance(effect, ChannelDelivery | ChannelStateReceived):
                self.channel_events[name].append(effect)
            elif isinstance(effect, SnapshotRecord):
                file = self.snapshot_files[name]
                if effect.rewrite:
                    file.clear()
                file.extend(effect.data)
        super()._apply(member, effects)
