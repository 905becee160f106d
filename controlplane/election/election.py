"""The election state machine: claims, grants, renewals, views, step-down; sans-IO.

One ``Election`` per member. The shell feeds it membership changes, election
messages and timer ticks, each with ``now`` read from the member's own monotonic
clock, and performs the returned effects. Roles:

* follower: votes on requests, reports the leader it has a fresh view of;
* candidate: the preferred eligible member, asking every alive eligible member
  for grants for a new epoch;
* leader: renews every ``beat_interval``, sending each alive eligible member a
  request of its own; it leads until ``lease_time`` after sending the newest
  request that every member that has granted this leadership granted again (or a
  majority of ``quorum`` voters).

A voter grants to one candidate at a time and keeps the grant for
``lease_time + max_clock_skew`` after receiving the request, so the holder's
belief always ends first (``lease.py``). A claim needs the grant of every alive
eligible member the candidate sees, the holder among them, so no second leader
arises in one component while the first believes it leads (``docs/election.md``).

Traffic is point to point (``Send``): requests to each eligible member, votes
back to the candidate, inquiries and their answers. Only a leadership that
begins or ends is gossiped (``Broadcast``). Views are judged fresh by the echo of
the receiver's own stamp, so no copy, however late, can revive a lease.
"""

from __future__ import annotations

import enum
import math
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from controlplane.election.config import DEFAULT_LEASE_TIME, ElectionConfig
from controlplane.election.effects import (
    Broadcast,
    Effect,
    ElectionStatus,
    LeaderChanged,
    LeaderView,
    MemberView,
    Send,
    SettingsDiffer,
)
from controlplane.election.fencing import MAX_EPOCH, next_epoch, token, valid_epoch
from controlplane.election.lease import (
    drift_factor,
    follower_expiry,
    holder_expiry,
    send_time_bound,
    view_expiry,
)
from controlplane.election.messages import (
    MAX_COUNTER,
    MAX_DURATION,
    MAX_NAME_BYTES,
    Echo,
    InquiryMessage,
    LeaseMessage,
    ReleaseMessage,
    ViewMessage,
    VoteMessage,
    decode,
)

# A gap between clock readings longer than this many beats means this process
# was paused or starved. It must stay below the membership layer's failure
# detection time, so that a member never missed a leadership it had to grant.
PAUSE_BEATS = 1.5
# Epochs from the wire are accepted only this far above the highest one seen, and
# never above MAX_EPOCH, so no single message can push the epoch to its ceiling and
# freeze it there: each new leadership raises the epoch by one, so a member is this
# far behind only after 2**20 leaderships it did not hear of; from MAX_EPOCH_STEP
# steps of forgery, 2**42 accepted messages are needed to reach the ceiling.
MAX_EPOCH_STEP = 2**20
# A holder's sequence numbers advance once per request: once a beat as leader, at
# most ten a beat as a candidate retrying. A number further ahead than this
# allowance for the time since the last one is not believed.
SEQ_STEP_BASE = 64
SEQ_STEP_PER_BEAT = 16
# Own stamps remembered to recognise their echoes (a few per beat are sent).
STAMPS_KEPT = 512
# A member without a rank asks again when its view has less than this fraction
# of a lease left, and waits this fraction of a lease when nobody leads.
POLL_BELOW = 0.5
POLL_IDLE = 0.25


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(slots=True)
class _Grant:
    """This member's vote: for ``candidate``'s ``epoch`` until ``expires`` (own clock)."""

    candidate: str
    epoch: int
    expires: float


@dataclass(slots=True)
class _Known:
    """What this member knows of another member's leadership ``epoch``.

    ``block_until`` is conservative (from receipt, lease plus skew, stretched for
    drift): claims and grants for anyone else wait for it. ``view_until`` is
    anchored on an echo of our own stamp and never passes the holder's own lease:
    the holder is reported as leader until then. ``seq`` is the newest request
    number heard from the holder itself; copies of it or older extend nothing.
    """

    holder: str
    epoch: int
    seq: int
    seq_at: float
    block_until: float
    view_until: float


class Election:
    """Lease leader election with fencing epochs for one member (see the module docstring)."""

    def __init__(
        self,
        config: ElectionConfig,
        name: str,
        *,
        rank: int | None,
        now: float,
        epoch: int = 0,
        life: int = 1,
        joining: bool = False,
    ) -> None:
        """``epoch`` restores the highest epoch this member saw before a restart (if kept);
        ``life`` identifies this process run (a restart must pick another value);
        ``joining`` says the shell is still joining the cluster (``joined`` ends it)."""
        if not 0 < len(name.encode("utf-8")) <= MAX_NAME_BYTES:
            raise ValueError(f"member name must be 1..{MAX_NAME_BYTES} UTF-8 bytes")
        if not valid_epoch(epoch):
            raise ValueError(f"epoch must be in 0..{MAX_EPOCH}")
        if not 0 <= life <= MAX_COUNTER:
            raise ValueError("life must be a uint64")
        self._cfg = config
        self._k = drift_factor(config.max_drift)
        self._name = name
        self._rank = rank
        self._life = life
        self._now = now
        self._members: dict[str, MemberView] = {}
        # False until the first membership view: the members in it are asked on
        # joining (``joined``), not one by one as they come into sight.
        self._viewed = False
        # The alive eligible members among them, by name: what claims and tallies read,
        # kept apart so that a fleet of ineligible members costs nothing per step.
        self._ranked: dict[str, int] = {}
        self._max_seen = epoch
        # Highest epoch this member ever granted, and to whom: a new leadership
        # needs a strictly higher one, so a voter never grants one epoch twice.
        self._max_granted = epoch
        self._last_granted_to: str | None = None
        self._grant: _Grant | None = None
        # Every leadership of others we know of, by holder: all of them block claims
        # and grants, not just the highest, since a lower one may belong to a paused
        # holder nobody else can vouch for.
        self._known: dict[str, _Known] = {}
        # The highest epoch this member ever reported: lower ones are never reported
        # again, so a member's view of the epoch only goes up.
        self._view_floor = 0
        # Start-up. A member that has not joined yet could not tell an incumbent from
        # no leader; once joined it asks every eligible member in sight who leads
        # (``_unanswered``) before it may claim. Both end at the latest one follower
        # lease after the start, when any lease it missed has run out everywhere.
        self._joining = joining
        self._listen_until = now + config.follower_lease
        self._unanswered: set[str] | None = None if joining else set()
        # In quorum mode a restarted voter may have forgotten a grant that a
        # majority depends on: it grants (and claims) nothing until any grant it
        # gave before the restart has run out. Without quorum the claimant needs
        # the holder's own grant, so forgotten grants cannot make a second leader.
        self._quiet_until = now + config.follower_lease if config.quorum > 0 else now
        # After a gap in our own clock readings (a process pause or starvation)
        # we may have missed a leadership that began meanwhile while the
        # membership layer showed us as failed; we do not claim until any such
        # lease has run out. Grants stay valid: they are pure durations.
        self._claim_quiet_until = now
        # A voter told us it backs another leadership until then (``Vote.committed``).
        self._claim_block = now
        self._role = Role.FOLLOWER
        self._epoch_held = 0
        self._seq = 0
        self._sent: dict[int, float] = {}
        # Voter -> newest request seq it granted in this leadership. Once leading,
        # exactly these members are needed for a renewal: a member that has not
        # granted (joined, restarted, came back) is not needed until it does.
        self._granted: dict[str, int] = {}
        self._lease_expires: float | None = None
        self._next_send = math.inf
        self._retry_at = now
        # Process run of each member as last heard, and its latest stamp with the
        # time we received it (echoed in our next message to it).
        self._lives: dict[str, int] = {}
        self._peer_stamps: dict[str, tuple[float, float]] = {}
        self._stamps: OrderedDict[float, None] = OrderedDict()
        self._next_poll = now
        self._reported: tuple[str, int] | None = None
        # Holders whose requests we refuse for another lease_time than ours (reported).
        self._settings_refused: set[str] = set()

    # ----------------------------------------------------------------- inputs

    def update_members(self, members: Mapping[str, MemberView], now: float) -> list[Effect]:
        """Replace the membership view (every member but ourselves is read from it)."""
        now = self._advance(now)
        before = self._ranked
        self._members = {name: view for name, view in members.items() if name != self._name}
        self._ranked = {
            name: view.rank
            for name, view in self._members.items()
            if view.alive and view.rank is not None
        }
        for name in self._ranked.keys() - before.keys():
            self._came_back(name)
        for name in [n for n in self._lives if n not in self._members]:
            self._forget(name)
        self._viewed = True
        return self._step(now, [])

    def update_some(self, changes: Mapping[str, MemberView | None], now: float) -> list[Effect]:
        """Some members changed (``None``: gone); costs O(changes) however large the
        cluster, so member events of a fleet stay cheap."""
        now = self._advance(now)
        for name, view in changes.items():
            if name == self._name:
                continue
            if view is None:
                self._members.pop(name, None)
                self._ranked.pop(name, None)
                self._forget(name)
                continue
            self._members[name] = view
            if view.alive and view.rank is not None:
                if name not in self._ranked:
                    self._came_back(name)
                self._ranked[name] = view.rank
            else:
                self._ranked.pop(name, None)
        self._viewed = True
        return self._step(now, [])

    def set_rank(self, rank: int | None, now: float) -> list[Effect]:
        """Our own rank changed (``None`` = not eligible); a lease in force is not cut short."""
        now = self._advance(now)
        self._rank = rank
        return self._step(now, [])

    def joined(self, now: float) -> list[Effect]:
        """The shell has joined the cluster (or has nobody to join): ask who leads."""
        now = self._advance(now)
        if self._joining:
            self._joining = False
            self._unanswered = set(self._ranked) if self._rank is not None else set()
            self._next_poll = now
        return self._step(now, [])

    def receive(self, data: bytes, now: float) -> list[Effect]:
        """Handle one election message; raises ``MessageError`` on garbage."""
        message = decode(data)
        now = self._advance(now)
        # Drop what ran out first, so a grant is free at the instant it expires.
        effects: list[Effect] = []
        self._expire(now, effects)
        if isinstance(message, LeaseMessage):
            self._on_lease(message, now, effects)
        elif isinstance(message, VoteMessage):
            self._on_vote(message, now, effects)
        elif isinstance(message, ReleaseMessage):
            self._on_release(message)
        elif isinstance(message, InquiryMessage):
            self._on_inquiry(message, now, effects)
        else:
            self._on_view(message, now)
        return self._step(now, effects)

    def tick(self, now: float) -> list[Effect]:
        """Timer: renew, retry a claim, ask, notice expiries. Call at ``next_deadline()``."""
        return self._step(self._advance(now), [])

    # ---------------------------------------------------------------- queries

    def next_deadline(self) -> float:
        """The earliest time ``tick`` must be called; never more than a beat away.

        The regular wake-up lets the election tell a paused process (a gap of
        more than ``PAUSE_BEATS`` beats between readings) from a quiet cluster.
        """
        now = self._now
        deadlines = [now + self._cfg.beat_interval]
        if self._role is Role.LEADER:
            assert self._lease_expires is not None
            deadlines += (self._lease_expires, self._next_send)
        elif self._role is Role.CANDIDATE:
            deadlines.append(self._next_send)
        else:
            deadlines.append(self._retry_at)
        for known in self._known.values():
            deadlines += (known.block_until, known.view_until)
        if self._grant is not None:
            deadlines.append(self._grant.expires)
        deadlines += (
            self._quiet_until,
            self._claim_quiet_until,
            self._claim_block,
            self._listen_until,
            self._next_poll,
        )
        # Whatever was due has been done by the call that just returned.
        return min(d for d in deadlines if d > now)

    def is_leader(self, now: float) -> bool:
        """True while this member holds an unexpired lease on its own clock."""
        return (
            self._role is Role.LEADER
            and self._lease_expires is not None
            and now < self._lease_expires
        )

    def leader(self, now: float) -> LeaderView | None:
        """Who leads as far as this member knows, with the fencing epoch.

        Another member is named only while a fresh view of its lease lasts, which
        is never past the end of that lease, and never with an epoch below one
        this member reported before."""
        if self.is_leader(now):
            assert self._lease_expires is not None
            return LeaderView(self._name, self._epoch_held, self._lease_expires - now, True)
        best: _Known | None = None
        for known in self._known.values():
            viewed = now < known.view_until and known.epoch >= self._view_floor
            if viewed and (
                best is None or token(known.epoch, known.holder) > token(best.epoch, best.holder)
            ):
                best = known
        if best is None:
            return None
        return LeaderView(best.holder, best.epoch, best.view_until - now, False)

    def status(self, now: float) -> ElectionStatus:
        """Why no leader is known and when one is expected (a leader known: who)."""
        view = self.leader(now)
        if view is not None:
            if view.is_self:
                return ElectionStatus("leading", "this member leads", None)
            return ElectionStatus("known", f"{view.name} leads", None)
        return self._electing_status(now)

    @property
    def epoch(self) -> int:
        """The highest epoch this member has seen; persist it to survive restarts."""
        return self._max_seen

    @property
    def name(self) -> str:
        return self._name

    @property
    def lease_time(self) -> float:
        return self._cfg.lease_time

    def ranked(self) -> list[tuple[str, int]]:
        """(name, rank) of every alive eligible member in sight, this one included
        when it has a rank, by rank then name: O(eligible members), not O(members)."""
        members = list(self._ranked.items())
        if self._rank is not None:
            members.append((self._name, self._rank))
        return sorted(members, key=lambda item: (item[1], item[0]))

    @property
    def rank(self) -> int | None:
        return self._rank

    @property
    def role(self) -> Role:
        return self._role

    # ------------------------------------------------------- lease arithmetic

    def _holder_lease_end(self, sent_at: float) -> float:
        """When our lease ends for a request we sent at ``sent_at`` (our clock)."""
        return holder_expiry(sent_at, self._cfg.lease_time)

    def _follower_lease_end(self, received_at: float) -> float:
        """When a grant given at ``received_at`` runs out."""
        return follower_expiry(received_at, self._cfg.lease_time, self._cfg.max_clock_skew)

    def _view_end(self, echo: Echo | None, remaining: float, now: float) -> float | None:
        """Until when a message reporting ``remaining`` seconds of lease lets us name
        its holder: from the earliest it can have been sent, known only through the
        echo of a stamp of ours; without one, not at all."""
        if echo is None or echo.stamp not in self._stamps or echo.stamp > now:
            return None
        sent = send_time_bound(echo.stamp, echo.held, self._cfg.max_drift)
        return view_expiry(sent, min(remaining, self._cfg.lease_time), self._cfg.max_drift)

    def _block_end(self, now: float, remaining: float, lease_time: float) -> float:
        """Until when a lease reported at ``now`` with ``remaining`` seconds (the
        sender's clock) may be in force: from receipt, plus the skew margin, which
        covers drift as it does for grants (``lease.py``). ``lease_time`` is the
        holder's; a longer one than ours blocks for longer, never shorter."""
        longest = max(self._cfg.lease_time, lease_time)
        return now + min(remaining, longest) + self._cfg.max_clock_skew

    # --------------------------------------------------------------- handlers

    def _on_lease(self, message: LeaseMessage, now: float, effects: list[Effect]) -> None:
        holder = message.holder
        member = self._members.get(holder)
        if holder == self._name or member is None or member.rank is None:
            return  # only members with a rank lead
        if not self._epoch_in_reach(message.epoch):
            return
        # A member our membership view still shows as failed may be back already:
        # what it says can make us more careful (block claims and grants, raise the
        # epoch), but we neither report it nor vote for it until it is alive.
        alive = holder in self._ranked
        # Agents that predate the setting do not state it: they ran with the default.
        holder_lease = message.lease_time or DEFAULT_LEASE_TIME
        known = self._known.get(holder)
        if known is not None and message.epoch < known.epoch:
            return  # a copy from an older leadership of this holder
        if message.established:
            if known is None or message.epoch > known.epoch:
                known = _Known(holder, message.epoch, message.seq, now, now, now)
                self._known[holder] = known
                fresh = True
            else:
                fresh = self._seq_in_reach(known, message.seq, now)
            if fresh:
                known.seq, known.seq_at = message.seq, now
                # A request may still become the holder's newest sufficient one: its
                # lease may then run a whole lease from its sending.
                horizon = holder_lease if message.request else message.remaining
                known.block_until = max(
                    known.block_until, self._block_end(now, horizon, holder_lease)
                )
            end = self._view_end(message.echo, message.remaining, now) if alive else None
            if end is not None:
                self._see(known, end, now)
            elif now >= known.view_until:
                # Announced by gossip, or before we had a stamp to echo: ask.
                self._next_poll = min(self._next_poll, now)
            if self._role is Role.LEADER and token(message.epoch, holder) > token(
                self._epoch_held, self._name
            ):
                # Two established leaders meet only after a partition heals; the
                # lower token steps down at once and frees its voters.
                self._step_down(effects)
        if self._rank is not None and message.request and alive:
            # The epoch the candidate must beat is what we saw before its request.
            seen_before = self._max_seen
            if holder_lease != self._cfg.lease_time:
                granted, retry_after, committed = self._refuse_other_lease(
                    holder, holder_lease, effects
                )
            else:
                granted, retry_after, committed = self._decide(
                    holder, message.epoch, message.established, now
                )
            self._max_seen = max(self._max_seen, message.epoch)
            vote = VoteMessage(
                self._name,
                holder,
                message.epoch,
                message.seq,
                granted,
                seen_before,
                min(max(0.0, retry_after), MAX_DURATION),
                self._life,
                self._stamp(now),
                committed,
            )
            effects.append(Send(holder, vote.to_bytes()))
        else:
            self._max_seen = max(self._max_seen, message.epoch)

    def _refuse_other_lease(
        self, candidate: str, lease_time: float, effects: list[Effect]
    ) -> tuple[bool, float, bool]:
        """A holder with another ``lease_time`` than ours is never granted. A longer
        one would outlive our grant; a shorter one is safe to grant, but its holder's
        start-up and pause waits would be too short for our own leases, so a cluster
        that disagrees elects nobody rather than risk two leaders. Refused without a
        commitment; the candidate asks again a lease later. Reported once per holder
        until it is forgotten, so a sender that varies the value cannot flood the log."""
        if candidate not in self._settings_refused:
            self._settings_refused.add(candidate)
            effects.append(SettingsDiffer(candidate, lease_time))
        return False, self._cfg.lease_time, False

    def _decide(
        self, candidate: str, epoch: int, established: bool, now: float
    ) -> tuple[bool, float, bool]:
        """Grant ``candidate`` its ``epoch``, or say how long until we might and
        whether that is because we back another leadership meanwhile."""
        if now < self._quiet_until:
            return False, self._quiet_until - now, False
        grant = self._grant
        if grant is not None and grant.candidate != candidate:
            return False, grant.expires - now, True
        if grant is not None:
            # Renewal of the leadership we back, or its holder re-claiming anew.
            if epoch != grant.epoch and not (epoch > self._max_granted and epoch >= self._max_seen):
                return False, 0.0, False
        else:
            blocking = self._blocking_lease(now, candidate)
            if blocking > now:
                return False, blocking - now, True
            if established:
                # Backing a leadership already in force (after a restart, a join or a
                # lapse) creates no leadership, so its epoch need not be new to us;
                # but never one below what we granted or reported.
                ok = epoch >= self._view_floor and (
                    epoch > self._max_granted
                    or (epoch == self._max_granted and self._last_granted_to in (None, candidate))
                )
            else:
                # A new leadership: strictly above every epoch granted (so two
                # leaderships we back never share one), and not below any seen.
                ok = (epoch > self._max_granted and epoch >= self._max_seen) or (
                    epoch == self._max_granted and self._last_granted_to == candidate
                )
            if not ok:
                return False, 0.0, False
        self._grant = _Grant(candidate, epoch, self._follower_lease_end(now))
        self._max_granted = max(self._max_granted, epoch)
        self._max_seen = max(self._max_seen, epoch)
        self._last_granted_to = candidate
        return True, 0.0, False

    def _on_vote(self, vote: VoteMessage, now: float, effects: list[Effect]) -> None:
        if vote.candidate != self._name or vote.voter not in self._ranked:
            return  # count only alive eligible members we know, so the tally stays bounded
        if not self._epoch_in_reach(vote.max_epoch):
            return
        self._note_peer(vote.voter, vote.life, vote.stamp, now)
        self._max_seen = max(self._max_seen, vote.max_epoch)
        if self._role is Role.FOLLOWER or vote.epoch != self._epoch_held:
            return
        if vote.granted:
            if self._granted.get(vote.voter, 0) < vote.seq <= self._seq:
                self._granted[vote.voter] = vote.seq
            self._tally(now, effects)
        elif self._role is Role.CANDIDATE:
            if vote.committed:
                # The voter backs another leadership, possibly the holder's own lease:
                # we may not lead before that has run out, even if the voter drops out
                # of sight meanwhile (a paused holder wakes up believing it leads).
                self._claim_block = max(self._claim_block, now + vote.retry_after)
                self._abandon_claim()
                self._retry_at = self._claim_block
            elif vote.retry_after == 0.0 and vote.max_epoch >= self._epoch_held:
                # Our epoch is used up at that voter: claim again with a higher one.
                self._abandon_claim()
                self._retry_at = now
            else:
                # Not granting yet (a restarted voter in quorum mode): ask again then.
                floor = self._cfg.beat_interval * 0.1
                self._next_send = min(self._next_send, now + max(vote.retry_after, floor))

    def _on_release(self, message: ReleaseMessage) -> None:
        if message.holder not in self._members:
            return
        grant = self._grant
        if grant is not None and grant.candidate == message.holder and grant.epoch <= message.epoch:
            self._grant = None
        known = self._known.get(message.holder)
        if known is not None and known.epoch <= message.epoch:
            del self._known[message.holder]

    def _on_inquiry(self, message: InquiryMessage, now: float, effects: list[Effect]) -> None:
        asker = message.asker
        view = self._members.get(asker)
        if view is None or not view.alive:
            return
        self._note_peer(asker, message.life, message.stamp, now)
        if (
            self._role is Role.LEADER
            and self._cfg.quorum == 0
            and asker in self._ranked
            and asker not in self._granted
        ):
            # The asker learns from our answer that our lease may run one request
            # further, and blocks its own claims for that long, but no longer: any
            # renewal beyond it needs the asker's grant, which then protects it.
            # Without this, requests lost on the way to it would let us renew past
            # what it knows, and it could claim once we drop out of its sight.
            self._granted[asker] = 0
        holder, epoch, view_remaining, block_remaining = self._describe(now)
        answer = ViewMessage(
            self._name,
            holder,
            epoch,
            min(view_remaining, MAX_DURATION),
            min(block_remaining, MAX_DURATION),
            Echo(message.stamp, 0.0),
            self._max_seen,
        )
        effects.append(Send(asker, answer.to_bytes()))

    def _on_view(self, message: ViewMessage, now: float) -> None:
        responder = message.responder
        if responder not in self._ranked or message.echo.stamp not in self._stamps:
            return  # answers only from eligible members, and only to our own questions
        if self._unanswered:
            self._unanswered.discard(responder)
        if self._epoch_in_reach(message.max_epoch):
            self._max_seen = max(self._max_seen, message.max_epoch)
        holder = message.holder
        if holder is None or holder == self._name:
            if self._rank is None:
                self._next_poll = now + self._cfg.lease_time * POLL_IDLE
            return
        member = self._members.get(holder)
        if member is None or member.rank is None or not self._epoch_in_reach(message.epoch):
            return
        known = self._known.get(holder)
        if known is not None and message.epoch < known.epoch:
            return
        if known is None or message.epoch > known.epoch:
            # Second hand: no request number of the holder's is known yet.
            known = _Known(holder, message.epoch, 0, now, now, now)
            self._known[holder] = known
        if message.block_remaining > 0.0:
            known.block_until = max(known.block_until, now + message.block_remaining)
        self._max_seen = max(self._max_seen, message.epoch)
        if holder in self._ranked:
            end = self._view_end(message.echo, message.view_remaining, now)
            if end is not None:
                self._see(known, end, now)
                if self._rank is None:
                    self._next_poll = now  # re-planned in the step, from the new view

    # ------------------------------------------------------------ the engine

    def _step(self, now: float, effects: list[Effect]) -> list[Effect]:
        self._expire(now, effects)
        if self._unanswered:
            for name in [n for n in self._unanswered if n not in self._ranked]:
                # It left our view without telling us what it holds. It may lead
                # without us: a holder renews without a member it does not see yet
                # (we are back from a pause, or new), so its renewals may have run
                # until it stopped, which was before now. Its lease has run out
                # everywhere one follower lease from now.
                self._unanswered.discard(name)
                self._claim_quiet_until = max(
                    self._claim_quiet_until, now + self._cfg.follower_lease
                )
        if self._role is Role.LEADER:
            if now >= self._next_send:
                if self._should_lead():
                    self._send_requests(now, effects)
                else:
                    self._announce(now, effects)
        elif self._role is Role.CANDIDATE:
            if not self._may_claim(now):
                self._abandon_claim()
            elif now >= self._next_send:
                self._send_requests(now, effects)
        if self._role is Role.FOLLOWER and now >= self._retry_at and self._may_claim(now):
            self._role = Role.CANDIDATE
            self._epoch_held = next_epoch(self._max_seen)
            self._max_seen = self._epoch_held
            self._send_requests(now, effects)
        self._poll(now, effects)
        self._report(now, effects)
        return effects

    def _expire(self, now: float, effects: list[Effect]) -> None:
        if self._role is Role.LEADER and not self.is_leader(now):
            # The lease ran out: this leadership is over (a change, so gossiped); a
            # new one needs a new epoch. We no longer believe, so the grants, ours
            # included, protect nothing: the release frees them at once.
            effects.append(Broadcast(ReleaseMessage(self._name, self._epoch_held).to_bytes()))
            if self._grant is not None and self._grant.candidate == self._name:
                self._grant = None
            self._reset_holding()
            self._retry_at = now
        for holder in [
            h for h, k in self._known.items() if now >= k.block_until and now >= k.view_until
        ]:
            del self._known[holder]
        if self._grant is not None and now >= self._grant.expires:
            self._grant = None

    def _send_requests(self, now: float, effects: list[Effect]) -> None:
        self._seq += 1
        seq = self._seq
        self._sent[seq] = now
        # Our own grant: we back ourselves exactly as any voter would.
        self._grant = _Grant(self._name, self._epoch_held, self._follower_lease_end(now))
        self._max_granted = max(self._max_granted, self._epoch_held)
        self._last_granted_to = self._name
        self._granted[self._name] = seq
        self._next_send = now + self._cfg.beat_interval
        # A request older than a lease can no longer extend the lease.
        horizon = now - self._cfg.lease_time
        for old in [s for s, sent_at in self._sent.items() if sent_at <= horizon]:
            del self._sent[old]
        established = self._role is Role.LEADER
        remaining = self._remaining(now) if established else 0.0
        # In name order: effects must not depend on how the view was built.
        for member in sorted(self._ranked):
            message = LeaseMessage(
                self._name,
                self._epoch_held,
                seq,
                established,
                True,
                remaining,
                self._echo_for(member, now),
                self._cfg.lease_time,
            )
            effects.append(Send(member, message.to_bytes()))
        self._tally(now, effects)

    def _announce(self, now: float, effects: list[Effect]) -> None:
        """Still leading but no longer renewing: keep every eligible member aware of
        what is left, so none is elected while we still lead."""
        self._next_send = now + self._cfg.beat_interval
        remaining = self._remaining(now)
        for member in sorted(self._ranked):
            message = LeaseMessage(
                self._name,
                self._epoch_held,
                self._seq,
                True,
                False,
                remaining,
                self._echo_for(member, now),
                self._cfg.lease_time,
            )
            effects.append(Send(member, message.to_bytes()))

    def _tally(self, now: float, effects: list[Effect]) -> None:
        """Extend the lease to the newest request that enough voters granted."""
        if not self._sent:
            return
        newest = self._sufficient_seq()
        candidates = [s for s in self._sent if s <= newest]
        if not candidates:
            return
        seq = max(candidates)
        end = self._holder_lease_end(self._sent[seq])
        for old in [s for s in self._sent if s < seq]:
            del self._sent[old]
        if now >= end:
            return
        if self._lease_expires is None or end > self._lease_expires:
            self._lease_expires = end
        if self._role is Role.CANDIDATE:
            if self._blocking_lease(now, self._name) > now or now < self._claim_block:
                # Someone else's lease became known while we gathered grants.
                self._abandon_claim()
                return
            self._role = Role.LEADER
            self._view_floor = max(self._view_floor, self._epoch_held)
            # Tell everyone at once rather than a beat later: the eligible members
            # directly (next step), everyone else by gossip, the one change we gossip.
            self._next_send = now
            announcement = LeaseMessage(
                self._name,
                self._epoch_held,
                seq,
                True,
                False,
                self._remaining(now),
                lease_time=self._cfg.lease_time,
            )
            effects.append(Broadcast(announcement.to_bytes()))

    def _sufficient_seq(self) -> int:
        """The newest request seq that enough voters granted (0 if none)."""
        granted = self._granted
        own = granted.get(self._name, 0)
        if self._cfg.quorum > 0:
            seqs = sorted(granted.values(), reverse=True)
            majority = self._cfg.majority
            return seqs[majority - 1] if len(seqs) >= majority else 0
        if self._role is Role.CANDIDATE:
            # A claim needs every alive eligible member we see, the holder of any
            # lease in force among them: that is what keeps one leader per component.
            needed = [granted.get(name, 0) for name in self._ranked]
        else:
            # A renewal needs the members that granted this leadership, and nobody
            # else: a member that joined, restarted or came back is needed only once
            # it has granted (docs/election.md says why that is safe).
            needed = [granted[name] for name in self._ranked if name in granted]
        return min([own, *needed])

    def _step_down(self, effects: list[Effect]) -> None:
        epoch = self._epoch_held
        self._reset_holding()
        if self._grant is not None and self._grant.candidate == self._name:
            self._grant = None
        effects.append(Broadcast(ReleaseMessage(self._name, epoch).to_bytes()))

    def _abandon_claim(self) -> None:
        # We never led on this claim, so our own grant protects nothing: free it,
        # or it would refuse the member we now defer to for a whole follower lease.
        grant = self._grant
        if self._role is Role.CANDIDATE and grant is not None and grant.candidate == self._name:
            self._grant = None
        self._reset_holding()

    def _reset_holding(self) -> None:
        self._role = Role.FOLLOWER
        self._lease_expires = None
        self._sent.clear()
        self._granted.clear()
        self._next_send = math.inf

    def _poll(self, now: float, effects: list[Effect]) -> None:
        """Ask who leads: every eligible member once after joining (before we may
        claim), and, for a member without a rank, one eligible member whenever our
        view runs low: nobody sends it renewals."""
        if now < self._next_poll or self._role is Role.LEADER:
            return
        if self._unanswered:
            for name in sorted(self._unanswered):
                self._inquire(name, now, effects)
            self._next_poll = now + self._cfg.beat_interval
            return
        if self._rank is not None:
            self._next_poll = math.inf
            return
        view = self.leader(now)
        low = self._cfg.lease_time * POLL_BELOW
        if view is not None and view.lease_remaining > low:
            self._next_poll = now + view.lease_remaining - low
            return
        relay = self._relay()
        if relay is None:
            self._next_poll = math.inf  # nobody to ask; a member change asks again
            return
        self._inquire(relay, now, effects)
        self._next_poll = now + self._cfg.beat_interval

    def _inquire(self, name: str, now: float, effects: list[Effect]) -> None:
        message = InquiryMessage(self._name, self._life, self._stamp(now))
        effects.append(Send(name, message.to_bytes()))

    def _relay(self) -> str | None:
        """The eligible member a member without a rank asks: chosen by rendezvous
        hashing, so that the members without a rank spread over the eligible ones
        and each keeps asking the same one."""
        if not self._ranked:
            return None
        own = self._name.encode()
        return max(self._ranked, key=lambda name: (zlib.crc32(own + b"\0" + name.encode()), name))

    # ------------------------------------------------------------ predicates

    def _should_lead(self) -> bool:
        """Keep renewing: still eligible, no member of a strictly lower rank in sight
        (an equal rank never displaces the incumbent), and (quorum) a majority."""
        if self._rank is None:
            return False
        if min(self._ranked.values(), default=self._rank) < self._rank:
            return False
        return self._cfg.quorum == 0 or len(self._ranked) + 1 >= self._cfg.majority

    def _preferred(self) -> bool:
        """The member to claim when nobody leads: the lowest (rank, name) in sight."""
        if self._rank is None:
            return False
        best = min(((rank, name) for name, rank in self._ranked.items()), default=None)
        if best is not None and best < (self._rank, self._name):
            return False
        return self._cfg.quorum == 0 or len(self._ranked) + 1 >= self._cfg.majority

    def _may_claim(self, now: float) -> bool:
        listening = self._joining or bool(self._unanswered)
        if listening and self._role is not Role.CANDIDATE and now < self._listen_until:
            return False
        if now < self._quiet_until or now < self._claim_quiet_until or now < self._claim_block:
            return False
        if not self._preferred():
            return False
        if self._blocking_lease(now, self._name) > now:
            return False
        grant = self._grant
        return grant is None or grant.candidate == self._name

    def _blocking_lease(self, now: float, candidate: str) -> float:
        """When the last known lease of anyone but ``candidate`` runs out (``now`` if none)."""
        ends = [
            max(known.block_until, known.view_until)
            for holder, known in self._known.items()
            if holder != candidate
        ]
        return max([now, *ends])

    def _epoch_in_reach(self, epoch: int) -> bool:
        return epoch <= min(self._max_seen + MAX_EPOCH_STEP, MAX_EPOCH)

    def _seq_in_reach(self, known: _Known, seq: int, now: float) -> bool:
        beats = max(0.0, now - known.seq_at) / self._cfg.beat_interval
        return known.seq < seq <= known.seq + SEQ_STEP_BASE + SEQ_STEP_PER_BEAT * beats

    # ------------------------------------------------------------- helpers

    def _see(self, known: _Known, end: float, now: float) -> None:
        """A fresh view of ``known`` lasting until ``end``: report it if its epoch is
        not below one we reported before."""
        if end <= now or known.epoch < self._view_floor:
            return
        known.view_until = max(known.view_until, end)
        self._view_floor = known.epoch

    def _describe(self, now: float) -> tuple[str | None, int, float, float]:
        """What we answer an inquiry: (holder, epoch, view left, block left)."""
        if self.is_leader(now):
            # We may extend the lease by a whole lease from our next request.
            return self._name, self._epoch_held, self._remaining(now), self._cfg.follower_lease
        best: _Known | None = None
        for known in self._known.values():
            if best is None or token(known.epoch, known.holder) > token(best.epoch, best.holder):
                best = known
        if best is None:
            return None, 0, 0.0, 0.0
        viewing = best.epoch >= self._view_floor and now < best.view_until
        view_left = best.view_until - now if viewing else 0.0
        return best.holder, best.epoch, view_left, max(0.0, best.block_until - now)

    def _remaining(self, now: float) -> float:
        assert self._lease_expires is not None
        return max(0.0, self._lease_expires - now)

    def _stamp(self, now: float) -> float:
        """A stamp for an outgoing message, remembered so its echo can be recognised."""
        self._stamps[now] = None
        self._stamps.move_to_end(now)
        while len(self._stamps) > STAMPS_KEPT:
            self._stamps.popitem(last=False)
        return now

    def _echo_for(self, member: str, now: float) -> Echo | None:
        heard = self._peer_stamps.get(member)
        if heard is None:
            return None
        stamp, received_at = heard
        held = now - received_at
        return Echo(stamp, held) if 0.0 <= held <= MAX_DURATION else None

    def _note_peer(self, name: str, life: int, stamp: float, now: float) -> None:
        if self._lives.get(name, life) != life:
            # A new process run: whatever it granted before is void, and it is
            # needed for renewals again only once it grants.
            self._granted.pop(name, None)
        self._lives[name] = life
        self._peer_stamps[name] = (stamp, now)

    def _came_back(self, name: str) -> None:
        """``name`` became an alive eligible member (joined, returned, re-ranked)."""
        self._granted.pop(name, None)
        if self._unanswered is not None and self._rank is not None and self._viewed:
            # A member that comes into sight (after our start or pause, its return,
            # a healed partition) may hold a lease it renews without us until it
            # sees us: ask it, and if it drops out of sight unanswered, wait (_step).
            self._unanswered.add(name)
            self._next_poll = min(self._next_poll, self._now)

    def _forget(self, name: str) -> None:
        self._lives.pop(name, None)
        self._peer_stamps.pop(name, None)
        self._settings_refused.discard(name)

    def _report(self, now: float, effects: list[Effect]) -> None:
        view = self.leader(now)
        key = None if view is None else (view.name, view.epoch)
        if key != self._reported:
            self._reported = key
            effects.append(LeaderChanged(view))

    def _advance(self, now: float) -> float:
        # A shell handing in an older reading must not move our clock backwards.
        if now > self._now:
            if now - self._now > PAUSE_BEATS * self._cfg.beat_interval:
                self._claim_quiet_until = max(
                    self._claim_quiet_until, now + self._cfg.follower_lease
                )
                # What happened meanwhile reached us only if someone sent it to us
                # while our view of them was current: ask every eligible member again,
                # so that the epochs begun meanwhile are known before we claim.
                if self._rank is not None and not self._joining:
                    self._unanswered = set(self._ranked)
                    self._next_poll = now
            self._now = now
        return self._now

    # ---------------------------------------------------------------- status

    def _electing_status(self, now: float) -> ElectionStatus:
        cfg = self._cfg
        beats = 2.0 * cfg.beat_interval
        bound = cfg.follower_lease + beats
        if self._rank is None:
            relay = self._relay()
            if relay is None:
                return ElectionStatus(
                    "no-candidate",
                    "this member has no rank and sees no member with one, so nobody can lead",
                    None,
                )
            return ElectionStatus(
                "following",
                f"this member has no rank; it asks {relay} who leads",
                self._blocked_for(now) + beats,
            )
        if self._joining and now < self._listen_until:
            return ElectionStatus(
                "joining",
                "joining the cluster: until it has, this member cannot tell a leader"
                " already in office from none, so it does not claim",
                self._listen_until - now + beats,
            )
        if self._unanswered and now < self._listen_until:
            return ElectionStatus(
                "asking",
                f"asking {len(self._unanswered)} member(s) who leads before claiming,"
                " so that a leader already in office keeps its place",
                self._listen_until - now + beats,
            )
        if now < self._quiet_until:
            return ElectionStatus(
                "restarted",
                "quorum mode: grants this member gave before it restarted may still be"
                " counted by a leader, so it grants and claims nothing until they have"
                " run out",
                self._quiet_until - now + beats,
            )
        if now < self._claim_quiet_until:
            return ElectionStatus(
                "paused",
                "this process was paused and may have missed a leadership that began"
                " meanwhile, so it does not claim until any such lease has run out",
                self._claim_quiet_until - now + beats,
            )
        blocked = self._blocked_for(now)
        if blocked > 0.0 and self._known:
            holder = max(self._known.values(), key=lambda k: max(k.block_until, k.view_until))
            return ElectionStatus(
                "lease",
                f"the lease of {holder.holder} (epoch {holder.epoch}) may still be in"
                " force; nobody else may lead until it has run out",
                max(blocked, self._claim_block - now) + beats,
            )
        if now < self._claim_block:
            return ElectionStatus(
                "lease",
                "a voter backs another leadership that may still be in force; this"
                " member does not claim until that has run out",
                self._claim_block - now + beats,
            )
        if self._cfg.quorum > 0 and len(self._ranked) + 1 < self._cfg.majority:
            return ElectionStatus(
                "no-quorum",
                f"{len(self._ranked) + 1} of the {self._cfg.quorum} expected voters are in"
                f" sight; a leader needs {self._cfg.majority}",
                None,
            )
        if self._preferred():
            waiting = 0.0
            if self._grant is not None and self._grant.candidate != self._name:
                waiting = self._grant.expires - now
            return ElectionStatus(
                "claiming",
                "this member has the lowest rank (then name) in sight and claims"
                " leadership; every eligible member in sight must grant it",
                max(waiting, 0.0) + bound,
            )
        best = min((rank, name) for name, rank in self._ranked.items())
        return ElectionStatus(
            "waiting",
            f"{best[1]} has the lowest rank (then name) in sight and is the one to claim",
            bound,
        )

    def _blocked_for(self, now: float) -> float:
        return max(0.0, self._blocking_lease(now, self._name) - now)
