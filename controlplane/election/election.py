"""The election state machine: claims, grants, renewals, step-down; sans-IO.

One ``Election`` per member. The shell feeds it membership changes, gossip
messages and timer ticks, each with ``now`` read from the member's own
monotonic clock, and performs the returned effects. Roles:

* follower: votes on requests, trusts the newest established lease it hears;
* candidate: the preferred eligible member, asking for grants for a new epoch;
* leader: renews every ``beat_interval``; it leads until ``lease_time`` after
  sending the newest request that enough voters granted (all alive eligible
  members it sees, or a majority of ``quorum`` voters).

A voter grants to one candidate at a time and keeps the grant for
``lease_time + max_clock_skew`` after receiving the request, so the holder's
belief always ends first (``lease.py``) and no second leader can gather the
grants it needs while the first still believes it leads (``docs/election.md``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

from controlplane.election.config import ElectionConfig
from controlplane.election.effects import (
    Broadcast,
    Effect,
    LeaderChanged,
    LeaderView,
    MemberView,
)
from controlplane.election.fencing import next_epoch, token
from controlplane.election.lease import follower_expiry, holder_expiry
from controlplane.election.messages import (
    MAX_NAME_BYTES,
    LeaseMessage,
    ReleaseMessage,
    VoteMessage,
    decode,
)

# A gap between clock readings longer than this many beats means this process
# was paused or starved. It must stay below the membership layer's failure
# detection time, so that a member never missed a leadership it had to grant.
PAUSE_BEATS = 1.5


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
class _KnownLease:
    """The newest established lease heard from another member, trusted until ``expires``."""

    holder: str
    epoch: int
    expires: float


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
    ) -> None:
        """``epoch`` restores the highest epoch this member saw before a restart (if kept)."""
        if not 0 < len(name.encode("utf-8")) <= MAX_NAME_BYTES:
            raise ValueError(f"member name must be 1..{MAX_NAME_BYTES} UTF-8 bytes")
        if epoch < 0:
            raise ValueError("epoch must be >= 0")
        self._cfg = config
        self._name = name
        self._rank = rank
        self._now = now
        self._members: dict[str, MemberView] = {}
        # The alive eligible members among them, by name: what claims and tallies read,
        # kept apart so that a fleet of ineligible members costs nothing per step.
        self._ranked: dict[str, int] = {}
        self._max_seen = epoch
        # Highest epoch this member ever granted, and to whom: a new leadership
        # needs a strictly higher one, so a voter never grants one epoch twice.
        self._max_granted = epoch
        self._last_granted_to: str | None = None
        self._grant: _Grant | None = None
        # Every established lease heard from others and still in force, by holder:
        # all of them block claims and grants, not just the highest, since a
        # lower one may belong to a paused holder nobody else can vouch for.
        self._known: dict[str, _KnownLease] = {}
        # A member that just started knows nothing of leases in force: it may
        # have granted one before a restart, or a holder may be paused with
        # voters this member cannot reach. It neither grants nor claims until
        # any lease begun before it started has run out everywhere.
        self._quiet_until = now + config.follower_lease
        # After a gap in our own clock readings (a process pause or starvation)
        # we may have missed a leadership that began meanwhile while the
        # membership layer showed us as failed; we do not claim until any such
        # lease has run out. Grants stay valid: they are pure durations.
        self._claim_quiet_until = now
        self._role = Role.FOLLOWER
        self._epoch_held = 0
        self._seq = 0
        self._sent: dict[int, float] = {}
        self._granted: dict[str, int] = {}
        self._lease_expires: float | None = None
        self._next_send = math.inf
        self._retry_at = now
        self._reported: tuple[str, int] | None = None

    # ----------------------------------------------------------------- inputs

    def update_members(self, members: Mapping[str, MemberView], now: float) -> list[Effect]:
        """Replace the membership view (every member but ourselves is read from it)."""
        now = self._advance(now)
        self._members = {name: view for name, view in members.items() if name != self._name}
        self._ranked = {
            name: view.rank
            for name, view in self._members.items()
            if view.alive and view.rank is not None
        }
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
                continue
            self._members[name] = view
            if view.alive and view.rank is not None:
                self._ranked[name] = view.rank
            else:
                self._ranked.pop(name, None)
        return self._step(now, [])

    def set_rank(self, rank: int | None, now: float) -> list[Effect]:
        """Our own rank changed (``None`` = not eligible); a lease in force is not cut short."""
        now = self._advance(now)
        self._rank = rank
        return self._step(now, [])

    def receive(self, data: bytes, now: float) -> list[Effect]:
        """Handle one election message from gossip; raises ``MessageError`` on garbage."""
        message = decode(data)
        now = self._advance(now)
        # Drop what ran out first, so a grant is free at the instant it expires.
        self._expire(now)
        effects: list[Effect] = []
        if isinstance(message, LeaseMessage):
            self._on_lease(message, now, effects)
        elif isinstance(message, VoteMessage):
            self._on_vote(message, now)
        else:
            self._on_release(message)
        return self._step(now, effects)

    def tick(self, now: float) -> list[Effect]:
        """Timer: renew, retry a claim, notice expiries. Call at ``next_deadline()``."""
        return self._step(self._advance(now), [])

    # ---------------------------------------------------------------- queries

    def next_deadline(self) -> float:
        """The earliest time ``tick`` must be called; never more than a beat away.

        The regular wake-up lets the election tell a paused process (a gap of
        more than ``PAUSE_BEATS`` beats between readings) from a quiet cluster.
        """
        deadlines = [self._now + self._cfg.beat_interval]
        if self._role is Role.LEADER:
            assert self._lease_expires is not None
            deadlines.append(self._lease_expires)
            deadlines.append(self._next_send)
        elif self._role is Role.CANDIDATE:
            deadlines.append(self._next_send)
        elif self._retry_at > self._now:
            deadlines.append(self._retry_at)
        deadlines.extend(known.expires for known in self._known.values())
        if self._grant is not None:
            deadlines.append(self._grant.expires)
        if self._quiet_until > self._now:
            deadlines.append(self._quiet_until)
        if self._claim_quiet_until > self._now:
            deadlines.append(self._claim_quiet_until)
        return min(deadlines)

    def is_leader(self, now: float) -> bool:
        """True while this member holds an unexpired lease on its own clock."""
        return (
            self._role is Role.LEADER
            and self._lease_expires is not None
            and now < self._lease_expires
        )

    def leader(self, now: float) -> LeaderView | None:
        """Who leads as far as this member knows, with the fencing epoch."""
        if self.is_leader(now):
            assert self._lease_expires is not None
            return LeaderView(self._name, self._epoch_held, self._lease_expires - now, True)
        live = [known for known in self._known.values() if now < known.expires]
        if not live:
            return None
        best = max(live, key=lambda known: token(known.epoch, known.holder))
        return LeaderView(best.holder, best.epoch, best.expires - now, False)

    @property
    def epoch(self) -> int:
        """The highest epoch this member has seen; persist it to survive restarts."""
        return self._max_seen

    @property
    def name(self) -> str:
        return self._name

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
        """When a grant or a trusted lease received at ``received_at`` runs out."""
        return follower_expiry(received_at, self._cfg.lease_time, self._cfg.max_clock_skew)

    # --------------------------------------------------------------- handlers

    def _on_lease(self, message: LeaseMessage, now: float, effects: list[Effect]) -> None:
        holder = message.holder
        if holder == self._name:
            return
        self._max_seen = max(self._max_seen, message.epoch)
        if message.established:
            # The holder may believe for ``remaining`` on its clock: trust it for
            # that plus the skew margin on ours (the same bound as lease.py,
            # since remaining <= lease_time).
            remaining = min(message.remaining, self._cfg.lease_time)
            expires = now + remaining + self._cfg.max_clock_skew
            known = self._known.get(holder)
            if (
                known is None
                or message.epoch > known.epoch
                or (message.epoch == known.epoch and expires > known.expires)
            ):
                self._known[holder] = _KnownLease(holder, message.epoch, expires)
            if self._role is Role.LEADER and token(message.epoch, holder) > token(
                self._epoch_held, self._name
            ):
                # Two established leaders meet only after a partition heals; the
                # lower token steps down at once and frees its voters.
                self._step_down(effects)
        if self._rank is None or not message.request:
            return  # only eligible members vote, and only on requests
        granted, retry_after = self._decide(holder, message.epoch, now)
        vote = VoteMessage(
            self._name,
            holder,
            message.epoch,
            message.seq,
            granted,
            self._max_granted,
            max(0.0, retry_after),
        )
        effects.append(Broadcast(vote.to_bytes(), to=holder))

    def _decide(self, candidate: str, epoch: int, now: float) -> tuple[bool, float]:
        """Grant ``candidate`` its ``epoch`` or say how long until we might."""
        if now < self._quiet_until:
            return False, self._quiet_until - now
        grant = self._grant
        if grant is not None and grant.candidate != candidate:
            return False, grant.expires - now
        if grant is not None:
            # Renewal of the leadership we back, or its holder re-claiming anew.
            if epoch != grant.epoch and not epoch > self._max_granted:
                return False, 0.0
        else:
            blocking = self._blocking_lease(now, candidate)
            if blocking > now:
                return False, blocking - now
            fresh = epoch > self._max_granted
            same = epoch == self._max_granted and self._last_granted_to == candidate
            if not (fresh or same):
                return False, 0.0
        self._grant = _Grant(candidate, epoch, self._follower_lease_end(now))
        self._max_granted = max(self._max_granted, epoch)
        self._max_seen = max(self._max_seen, epoch)
        self._last_granted_to = candidate
        return True, 0.0

    def _on_vote(self, vote: VoteMessage, now: float) -> None:
        if vote.candidate != self._name:
            return  # a vote for someone else: the broadcast medium delivered it here too
        self._max_seen = max(self._max_seen, vote.max_epoch)
        if self._role is Role.FOLLOWER or vote.epoch != self._epoch_held:
            return
        if vote.voter not in self._members:
            return  # count only members we know, so the tally stays bounded
        if vote.granted:
            if vote.seq > self._granted.get(vote.voter, 0):
                self._granted[vote.voter] = vote.seq
            self._tally(now)
        elif self._role is Role.CANDIDATE:
            if vote.max_epoch >= self._epoch_held:
                # Our epoch is used up at that voter: claim again with a higher one.
                self._abandon_claim()
                self._retry_at = now
            else:
                # Busy elsewhere: ask again when that voter's grant runs out.
                floor = self._cfg.beat_interval * 0.1
                self._next_send = min(self._next_send, now + max(vote.retry_after, floor))

    def _on_release(self, message: ReleaseMessage) -> None:
        grant = self._grant
        if grant is not None and grant.candidate == message.holder and grant.epoch <= message.epoch:
            self._grant = None
        known = self._known.get(message.holder)
        if known is not None and known.epoch <= message.epoch:
            del self._known[message.holder]

    # ------------------------------------------------------------ the engine

    def _step(self, now: float, effects: list[Effect]) -> list[Effect]:
        self._expire(now)
        if self._role is Role.LEADER:
            if now >= self._next_send:
                if self._should_lead():
                    self._send_request(now, effects)
                else:
                    self._announce(now, effects)
        elif self._role is Role.CANDIDATE:
            if not self._may_claim(now):
                self._abandon_claim()
            elif now >= self._next_send:
                self._send_request(now, effects)
        if self._role is Role.FOLLOWER and now >= self._retry_at and self._may_claim(now):
            self._role = Role.CANDIDATE
            self._epoch_held = next_epoch(self._max_seen)
            self._max_seen = self._epoch_held
            self._send_request(now, effects)
        self._report(now, effects)
        return effects

    def _expire(self, now: float) -> None:
        if self._role is Role.LEADER and not self.is_leader(now):
            # The lease ran out: this leadership is over; a new one needs a new epoch.
            self._reset_holding()
            self._retry_at = now
        for holder in [h for h, known in self._known.items() if now >= known.expires]:
            del self._known[holder]
        if self._grant is not None and now >= self._grant.expires:
            self._grant = None

    def _send_request(self, now: float, effects: list[Effect]) -> None:
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
        message = LeaseMessage(
            self._name, self._epoch_held, seq, established, True, self._cfg.lease_time
        )
        effects.append(Broadcast(message.to_bytes()))
        self._tally(now)

    def _announce(self, now: float, effects: list[Effect]) -> None:
        """Still leading but no longer renewing: keep everyone aware of what is left.

        Without this, a member that joined our component after our last renewal
        would not know of the lease and could be elected while we still lead.
        """
        assert self._lease_expires is not None
        self._next_send = now + self._cfg.beat_interval
        remaining = self._lease_expires - now
        message = LeaseMessage(self._name, self._epoch_held, self._seq, True, False, remaining)
        effects.append(Broadcast(message.to_bytes()))

    def _tally(self, now: float) -> None:
        """Extend the lease to the newest request that enough voters granted."""
        for seq in sorted(self._sent, reverse=True):
            if not self._enough(seq):
                continue
            end = self._holder_lease_end(self._sent[seq])
            for old in [s for s in self._sent if s < seq]:
                del self._sent[old]
            if now >= end:
                return
            if self._lease_expires is None or end > self._lease_expires:
                self._lease_expires = end
            if self._role is Role.CANDIDATE:
                if self._blocking_lease(now, self._name) > now:
                    # Someone else's lease became known while we gathered grants.
                    self._abandon_claim()
                    return
                self._role = Role.LEADER
                # Tell everyone at once rather than a beat later.
                self._next_send = now
            return

    def _enough(self, seq: int) -> bool:
        granted = self._granted
        if self._cfg.quorum > 0:
            votes = sum(1 for voter_seq in granted.values() if voter_seq >= seq)
            return votes >= self._cfg.majority
        if granted.get(self._name, 0) < seq:
            return False
        return all(granted.get(name, 0) >= seq for name in self._ranked)

    def _step_down(self, effects: list[Effect]) -> None:
        epoch = self._epoch_held
        self._reset_holding()
        if self._grant is not None and self._grant.candidate == self._name:
            self._grant = None
        effects.append(Broadcast(ReleaseMessage(self._name, epoch).to_bytes()))

    def _abandon_claim(self) -> None:
        self._reset_holding()

    def _reset_holding(self) -> None:
        self._role = Role.FOLLOWER
        self._lease_expires = None
        self._sent.clear()
        self._granted.clear()
        self._next_send = math.inf

    # ------------------------------------------------------------ predicates

    def _eligible_alive(self) -> list[tuple[int, str]]:
        ranked = [(rank, name) for name, rank in self._ranked.items()]
        if self._rank is not None:
            ranked.append((self._rank, self._name))
        return ranked

    def _should_lead(self) -> bool:
        """Keep renewing: still eligible, still preferred, and (quorum) a majority in sight."""
        if self._rank is None:
            return False
        ranked = self._eligible_alive()
        if min(ranked) != (self._rank, self._name):
            return False
        return self._cfg.quorum == 0 or len(ranked) >= self._cfg.majority

    def _may_claim(self, now: float) -> bool:
        if now < self._quiet_until or now < self._claim_quiet_until:
            return False
        if not self._should_lead():
            return False
        if self._blocking_lease(now, self._name) > now:
            return False
        grant = self._grant
        return grant is None or grant.candidate == self._name

    def _blocking_lease(self, now: float, candidate: str) -> float:
        """When the last known lease of anyone but ``candidate`` runs out (``now`` if none)."""
        ends = [
            known.expires
            for holder, known in self._known.items()
            if holder != candidate and now < known.expires
        ]
        return max(ends, default=now)

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
            self._now = now
        return self._now
