"""Drives the lease election on the event loop, over the membership layer.

The shell feeds the election the member list (ranks from the `rank` tag of
eligible members), its messages and the time, keeps one timer at the election's
next deadline, and publishes leader changes. Messages for one member (requests,
votes, inquiries, answers) go straight to that member's gossip address as direct
datagrams (`gossip/direct.py`); changes of leadership go out on the gossip
"election" channel. It also remembers the highest fencing epoch in the data
directory, so a restarted agent never reuses an epoch, and tells the election
when the agent's joins are done, so that a joining agent does not claim before
it could know of a leader in office.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from controlplane.configerror import ConfigError
from controlplane.datadir import atomic_write
from controlplane.election import (
    MAX_EPOCH,
    Broadcast,
    Election,
    ElectionStatus,
    LeaderChanged,
    LeaderView,
    MemberView,
    MessageError,
    Send,
    SettingsDiffer,
    valid_epoch,
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
from controlplane.shell.deadline import DeadlineTimer
from controlplane.shell.runtime import Address, GossipRuntime

log = logging.getLogger("controlplane.election")

CHANNEL = "election"
RANK_TAG = "rank"
ROLE_TAG = "role"
SERVER_ROLE = "server"
# The rank range of config.py (--rank).
MAX_RANK = 1_000_000
MAX_RANK_DIGITS = 7


def new_life() -> int:
    """A random identifier for this process run (``Election(life=...)``)."""
    return secrets.randbits(64)


def member_rank(member: MemberInfo) -> int | None:
    """The rank of an eligible member (a server with a numeric rank tag), else None."""
    if member.tags.get(ROLE_TAG) != SERVER_ROLE:
        return None
    raw = member.tags.get(RANK_TAG, "")
    # isdecimal alone accepts other scripts' digits, which int() may refuse. A rank
    # is what config.py accepts (0 to 1,000,000, at most 7 digits): a tag beyond it
    # makes the member ineligible rather than a number of hundreds of digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_RANK_DIGITS):
        return None
    rank = int(raw)
    return rank if rank <= MAX_RANK else None


def member_views(members: Iterable[MemberInfo]) -> dict[str, MemberView]:
    return {
        m.name: MemberView(rank=member_rank(m), alive=m.status is MemberStatus.ALIVE)
        for m in members
    }


def describe(status: ElectionStatus) -> str:
    """One line for the log and the CLI: "electing; a leader is expected within N s (why)"."""
    if status.expected_within is None:
        return f"electing ({status.reason})"
    seconds = max(1, round(status.expected_within))
    return f"electing; a leader is expected within {seconds} s ({status.reason})"


# The file holds one decimal number and a newline: MAX_EPOCH has 19 digits.
_EPOCH_FILE_MAX_BYTES = 64


class EpochStore:
    """The highest epoch this agent has seen, in `<data_dir>/election.epoch`."""

    def __init__(self, data_dir: str) -> None:
        self.path = Path(data_dir) / "election.epoch"

    def load(self) -> int:
        """The stored epoch; 0 without a file. A file that cannot be read, or holds
        anything but a number in 0..MAX_EPOCH, raises ConfigError: starting from 0
        could reuse an epoch, and starting from a number above the range would leave
        the agent granting nothing for ever (it grants only above what it has seen)."""
        try:
            with self.path.open("rb") as handle:
                raw = handle.read(_EPOCH_FILE_MAX_BYTES + 1)
        except FileNotFoundError:
            return 0
        except OSError as error:
            raise ConfigError(f"{self.path} cannot be read: {error.strerror or error}") from None
        text = raw.decode("ascii", errors="replace").strip()
        epoch = int(text) if len(raw) <= _EPOCH_FILE_MAX_BYTES and text.isdigit() else -1
        if not valid_epoch(epoch):
            raise ConfigError(
                f"{self.path} must hold an epoch in 0..{MAX_EPOCH}, "
                f"found {text[:40]!r}; remove it to take the epoch from the cluster"
            )
        return epoch

    def save(self, epoch: int) -> None:
        try:
            atomic_write(self.path, f"{epoch}\n".encode(), mode=0o644)
        except OSError as error:
            log.error("cannot write %s: %s", self.path, error.strerror)


# Leader changes an agent remembers (GetLeaderHistory).
HISTORY_KEPT = 100


@dataclass(frozen=True, slots=True)
class LeaderChange:
    """One change of leader as this agent saw it: ``leader`` None when it knows of
    none from then on; ``cause`` one word (elected, learned, ended), ``reason`` a
    sentence; ``at`` is wall-clock time, for people."""

    at: float
    leader: str | None
    epoch: int
    cause: str
    reason: str


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
        self._timer = DeadlineTimer(self._on_timer)
        self._closed = False
        # Joins (seed list, snapshot) still running; the election claims nothing
        # until they are done (``joins_started``, ``joined``).
        self._pending_joins = 0
        self._joins_started = False
        self._logged_state: str | None = None
        self.direct_sent = 0
        self.direct_dropped = 0
        self.history: deque[LeaderChange] = deque(maxlen=HISTORY_KEPT)
        runtime.on_channel(CHANNEL, self._on_channel)
        runtime.on_direct(CHANNEL, self._on_direct)

    def start(self) -> None:
        self.refresh_members()

    def close(self) -> None:
        self._closed = True
        self._timer.cancel()

    def leader(self) -> LeaderView | None:
        return self.election.leader(self._runtime.now)

    def status(self) -> ElectionStatus:
        return self.election.status(self._runtime.now)

    # ------------------------------------------------------------------ joins

    def expect_join(self) -> None:
        """A join task starts; call ``joined`` when it ends."""
        self._pending_joins += 1

    def joins_started(self) -> None:
        """Every join task has been started (perhaps none): the election may go on
        once they have ended."""
        self._joins_started = True
        self._maybe_joined()
        self._log_status()

    def joined(self) -> None:
        self._pending_joins = max(0, self._pending_joins - 1)
        self._maybe_joined()

    def _maybe_joined(self) -> None:
        if self._closed or not self._joins_started or self._pending_joins:
            return
        self._apply(self.election.joined(self._runtime.now))

    # ---------------------------------------------------------------- members

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

    # --------------------------------------------------------------- messages

    def _on_channel(self, effect: ChannelDelivery | ChannelStateReceived) -> None:
        if isinstance(effect, ChannelDelivery):
            self._receive(effect.payload, effect.origin)

    def _on_direct(self, source: Address, payload: bytes) -> None:
        if not self._closed:
            self._receive(payload, source)

    def _receive(self, payload: bytes, origin: object) -> None:
        try:
            effects = self.election.receive(payload, self._runtime.now)
        except MessageError as error:
            log.debug("dropped an election message from %s: %s", origin, error)
            return
        self._apply(effects)

    def _on_timer(self) -> None:
        if not self._closed:
            self._apply(self.election.tick(self._runtime.now))

    def _apply(self, effects: Iterable[ElectionEffect]) -> None:
        effects = list(effects)
        # The epoch reaches the disk before any vote or claim that carries it leaves,
        # so a crash right after a send cannot make a restart reuse that epoch.
        if self._epochs is not None and self.election.epoch > self._saved_epoch:
            self._saved_epoch = self.election.epoch
            self._epochs.save(self._saved_epoch)
        for effect in effects:
            if isinstance(effect, Send):
                self._send_direct(effect)
            elif isinstance(effect, Broadcast):
                self._runtime.send(CHANNEL, effect.data)
            elif isinstance(effect, LeaderChanged):
                view = effect.view
                if view is None:
                    log.info("no leader")
                else:
                    log.info("leader is %s (epoch %d)", view.name, view.epoch)
                self.history.append(self._change(view))
                self._publish(view)
            elif isinstance(effect, SettingsDiffer):
                log.warning(
                    "refusing to grant %s: its lease_time (%g s) differs from this agent's"
                    " (%g s); no leader is elected until every server has the same",
                    effect.holder,
                    effect.lease_time,
                    self.election.lease_time,
                )
        self._log_status()
        self._schedule()

    def _change(self, view: LeaderView | None) -> LeaderChange:
        now = time.time()
        if view is None:
            status = self.election.status(self._runtime.now)
            return LeaderChange(now, None, 0, "ended", status.reason)
        if view.is_self:
            return LeaderChange(
                now, view.name, view.epoch, "elected", f"this agent leads with epoch {view.epoch}"
            )
        return LeaderChange(
            now, view.name, view.epoch, "learned", f"{view.name} leads with epoch {view.epoch}"
        )

    def _send_direct(self, effect: Send) -> None:
        member = self._runtime.layer.member(effect.to)
        if member is None:
            self.direct_dropped += 1
            return
        self._runtime.send_direct(CHANNEL, member.address, effect.data)
        self.direct_sent += 1

    def _log_status(self) -> None:
        """Says once per state why there is no leader and when one is expected."""
        if not self._joins_started:
            return  # the agent is still starting: what its joins are is not known yet
        status = self.election.status(self._runtime.now)
        if status.state == self._logged_state:
            return
        self._logged_state = status.state
        if status.state not in ("leading", "known"):
            log.info("%s", describe(status))

    def _schedule(self) -> None:
        if not self._closed:
            self._timer.arm(asyncio.get_running_loop(), self.election.next_deadline())
