"""Drives the lease election on the event loop, over the membership layer.

The shell feeds the election the member list (ranks from the `rank` tag of
eligible members), the messages of the gossip "election" channel and the time,
keeps one timer at the election's next deadline, sends its broadcasts on the
channel, and publishes leader changes. It also remembers the highest fencing
epoch in the data directory, so a restarted agent never reuses an epoch.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from controlplane.election import (
    Broadcast,
    Election,
    LeaderChanged,
    LeaderView,
    MemberView,
    MessageError,
)
from controlplane.election import Effect as ElectionEffect
from controlplane.membership import (
    ChannelDelivery,
    ChannelStateReceived,
    EventType,
    MemberEvent,
    MemberInfo,
    MemberStatus,
)
from controlplane.transport.runtime import GossipRuntime

log = logging.getLogger("controlplane.election")

CHANNEL = "election"
RANK_TAG = "rank"
ROLE_TAG = "role"
SERVER_ROLE = "server"


def member_rank(member: MemberInfo) -> int | None:
    """The rank of an eligible member (a server with a numeric rank tag), else None."""
    if member.tags.get(ROLE_TAG) != SERVER_ROLE:
        return None
    raw = member.tags.get(RANK_TAG, "")
    # isdecimal alone accepts other scripts' digits, which int() may refuse.
    return int(raw) if raw.isascii() and raw.isdigit() else None


def member_views(members: Iterable[MemberInfo]) -> dict[str, MemberView]:
    return {
        m.name: MemberView(rank=member_rank(m), alive=m.status is MemberStatus.ALIVE)
        for m in members
    }


class EpochStore:
    """The highest epoch this agent has seen, in `<data_dir>/election.epoch`."""

    def __init__(self, data_dir: str) -> None:
        self.path = Path(data_dir) / "election.epoch"

    def load(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as error:
            log.warning("cannot read %s (%s); epochs restart from gossip", self.path, error)
            return 0

    def save(self, epoch: int) -> None:
        temporary = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(f"{epoch}\n")
            os.replace(temporary, self.path)
        except OSError as error:
            log.error("cannot write %s: %s", self.path, error.strerror)


class ElectionDriver:
    """One member's election, live."""

    def __init__(
        self,
        election: Election,
        runtime: GossipRuntime,
        publish: Callable[[LeaderView | None], None],
        epochs: EpochStore | None = None,
    ) -> None:
        self.election = election
        self._runtime = runtime
        self._publish = publish
        self._epochs = epochs
        self._saved_epoch = election.epoch
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        runtime.on_channel(CHANNEL, self._on_channel)

    def start(self) -> None:
        self.refresh_members()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()

    def leader(self) -> LeaderView | None:
        return self.election.leader(self._runtime.now)

    def on_member_event(self, event: MemberEvent) -> None:
        """Feeds the members of one event to the election: O(members in the event)."""
        layer = self._runtime.layer
        now = self._runtime.now
        changes: dict[str, MemberView | None] = {}
        for changed in event.members:
            if changed.name == layer.name:
                local_rank = member_rank(layer.local_member())
                if local_rank != self.election.rank:
                    self._apply(self.election.set_rank(local_rank, now))
                continue
            current = None if event.type is EventType.MEMBER_REAP else layer.member(changed.name)
            changes[changed.name] = (
                None
                if current is None
                else MemberView(
                    rank=member_rank(current), alive=current.status is MemberStatus.ALIVE
                )
            )
        if changes:
            self._apply(self.election.update_some(changes, now))

    def refresh_members(self) -> None:
        """Feeds the current member list (and our own rank) to the election."""
        layer = self._runtime.layer
        now = self._runtime.now
        local_rank = member_rank(layer.local_member())
        if local_rank != self.election.rank:
            self._apply(self.election.set_rank(local_rank, now))
        self._apply(self.election.update_members(member_views(layer.members()), now))

    def _on_channel(self, effect: ChannelDelivery | ChannelStateReceived) -> None:
        if not isinstance(effect, ChannelDelivery):
            return
        try:
            effects = self.election.receive(effect.payload, self._runtime.now)
        except MessageError as error:
            log.debug("dropped an election message from %s: %s", effect.origin, error)
            return
        self._apply(effects)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._closed:
            self._apply(self.election.tick(self._runtime.now))

    def _apply(self, effects: Iterable[ElectionEffect]) -> None:
        for effect in effects:
            if isinstance(effect, Broadcast):
                # Votes carry their addressee; every other member drops them.
                self._runtime.send(CHANNEL, effect.data)
            elif isinstance(effect, LeaderChanged):
                view = effect.view
                if view is None:
                    log.info("no leader")
                else:
                    log.info("leader is %s (epoch %d)", view.name, view.epoch)
                self._publish(view)
        if self._epochs is not None and self.election.epoch > self._saved_epoch:
            self._saved_epoch = self.election.epoch
            self._epochs.save(self._saved_epoch)
        self._schedule()

    def _schedule(self) -> None:
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(self.election.next_deadline(), self._on_timer)
