"""The election state machine: claims, grants, renewals, views, epochs, traffic, start-up."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from controlplane.election import (
    Broadcast,
    Echo,
    Effect,
    Election,
    ElectionConfig,
    InquiryMessage,
    LeaderChanged,
    LeaseMessage,
    MemberView,
    Message,
    ReleaseMessage,
    Role,
    Send,
    SettingsDiffer,
    ViewMessage,
    VoteMessage,
    decode,
)
from controlplane.election.election import MAX_EPOCH_STEP

CFG = ElectionConfig()
QUORUM = ElectionConfig(quorum=3)
L, S, BEAT = CFG.lease_time, CFG.max_clock_skew, CFG.beat_interval
QUIET = CFG.follower_lease


def sends(effects: Iterable[Effect]) -> list[tuple[str, Message]]:
    return [(e.to, decode(e.data)) for e in effects if isinstance(e, Send)]


def gossip(effects: Iterable[Effect]) -> list[Message]:
    return [decode(e.data) for e in effects if isinstance(e, Broadcast)]


def run(e: Election, start: float, until: float) -> list[Effect]:
    """Tick every beat from ``start`` to ``until``, as a shell does; all effects."""
    effects: list[Effect] = []
    t = start
    while t < until:
        effects += e.tick(t)
        t += BEAT
    return effects + e.tick(until)


def alive(**ranks: int | None) -> dict[str, MemberView]:
    return {name: MemberView(rank, True) for name, rank in ranks.items()}


Drop = Callable[[str, str, Message], bool]


class Net:
    """Members that deliver every message at once, in order, unless ``drop`` says not."""

    def __init__(
        self, config: ElectionConfig = CFG, drop: Drop | None = None, **ranks: int | None
    ) -> None:
        self.config = config
        self.now = 0.0
        self.ranks = dict(ranks)
        self.alive = dict.fromkeys(ranks, True)
        self.lives = dict.fromkeys(ranks, 1)
        self.drop: Drop = drop or (lambda sender, to, message: False)
        self.log: list[tuple[str, str, Message]] = []
        self.members = {name: self._new(name) for name in ranks}
        for name in ranks:
            self.view_changed(name)
        for name in ranks:
            self.deliver(name, self.members[name].joined(self.now))

    def _new(self, name: str, epoch: int = 0) -> Election:
        return Election(
            self.config,
            name,
            rank=self.ranks[name],
            now=self.now,
            life=self.lives[name],
            epoch=epoch,
            joining=True,
        )

    def add(self, name: str, rank: int | None) -> None:
        """A new member starts, every view shows it, and it joins."""
        self.ranks[name], self.alive[name], self.lives[name] = rank, True, 1
        self.members[name] = self._new(name)
        self.view_changed()
        self.deliver(name, self.members[name].joined(self.now))

    def views(self, name: str) -> dict[str, MemberView]:
        return {n: MemberView(r, self.alive[n]) for n, r in self.ranks.items() if n != name}

    def view_changed(self, *names: str) -> None:
        for name in names or tuple(self.members):
            if self.alive[name]:
                self.deliver(name, self.members[name].update_members(self.views(name), self.now))

    def deliver(self, sender: str, effects: list[Effect]) -> None:
        queue = [(sender, e) for e in effects]
        while queue:
            source, effect = queue.pop(0)
            if isinstance(effect, Send):
                targets = [effect.to]
            elif isinstance(effect, Broadcast):
                targets = [n for n in self.members if n != source]
            else:
                continue
            message = decode(effect.data)
            for target in targets:
                self.log.append((source, target, message))
                if not self.alive.get(target) or self.drop(source, target, message):
                    continue
                out = self.members[target].receive(effect.data, self.now)
                queue += [(target, e) for e in out]

    def run(self, seconds: float, step: float = 0.1) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = min(end, self.now + step)
            for name, member in self.members.items():
                if self.alive[name]:
                    self.deliver(name, member.tick(self.now))

    def leader(self, name: str) -> tuple[str, int] | None:
        view = self.members[name].leader(self.now)
        return None if view is None else (view.name, view.epoch)

    def restart(self, name: str) -> None:
        """A new process run of ``name`` with its epoch kept (the agent persists it)."""
        self.lives[name] += 1
        self.members[name] = self._new(name, epoch=self.members[name].epoch)
        self.view_changed(name)
        self.deliver(name, self.members[name].joined(self.now))

    def sent_by(self, name: str, kind: type) -> list[Message]:
        return [m for s, _, m in self.log if s == name and isinstance(m, kind)]


# ------------------------------------------------------------------ start-up


def test_a_lone_member_leads_at_once_with_epoch_one() -> None:
    e = Election(CFG, "a", rank=1, now=0.0)
    effects = e.tick(0.0)
    assert e.is_leader(0.0)
    assert e.epoch == 1
    changed = [x for x in effects if isinstance(x, LeaderChanged)]
    assert changed[-1].view is not None
    assert changed[-1].view.is_self
    # The one change that is gossiped: a leadership began.
    assert [type(m) for m in gossip(effects)] == [LeaseMessage]


def test_a_joining_member_does_not_claim_until_joined() -> None:
    e = Election(CFG, "a", rank=1, now=0.0, joining=True)
    run(e, 0.0, 5.0)
    assert not e.is_leader(5.0)
    assert e.status(5.0).state == "joining"
    e.joined(5.5)
    assert e.is_leader(5.5)


def test_a_join_that_never_ends_delays_claims_by_one_follower_lease_at_most() -> None:
    e = Election(CFG, "a", rank=1, now=0.0, joining=True)
    run(e, 0.0, QUIET - 0.5)
    assert not e.is_leader(QUIET - 0.5)
    run(e, QUIET - 0.5, QUIET)
    assert e.is_leader(QUIET)


def test_a_joined_member_asks_every_eligible_member_before_it_claims() -> None:
    e = Election(CFG, "a", rank=1, now=0.0, joining=True)
    e.update_members(alive(b=5, c=6, x=None), 0.0)
    out = sends(e.joined(0.1))
    assert sorted(to for to, m in out if isinstance(m, InquiryMessage)) == ["b", "c"]
    assert e.status(0.1).state == "asking"
    inquiry = next(m for _, m in out if isinstance(m, InquiryMessage))
    assert isinstance(inquiry, InquiryMessage)
    none = ViewMessage("b", None, 0, 0.0, 0.0, Echo(inquiry.stamp, 0.0), 4)
    e.receive(none.to_bytes(), 0.2)
    assert e.role is Role.FOLLOWER  # c has not answered yet
    # Unanswered questions are asked again each beat.
    again = sends(e.tick(1.1))
    assert [to for to, m in again if isinstance(m, InquiryMessage)] == ["c"]
    answer = ViewMessage("c", None, 0, 0.0, 0.0, Echo(inquiry.stamp, 0.0), 0)
    claims = [m for _, m in sends(e.receive(answer.to_bytes(), 1.2)) if isinstance(m, LeaseMessage)]
    # Every question answered, it claims: above the highest epoch anybody told it of.
    assert [(m.epoch, m.established) for m in claims] == [(5, False), (5, False)]


def test_an_incumbent_of_equal_rank_keeps_leading_when_a_lower_name_joins() -> None:
    net = Net(b=0, c=0)
    net.run(2.0)
    assert net.leader("c") == ("b", 1)
    # "a" sorts first: with equal ranks the (rank, name) order prefers it.
    net.add("a", 0)
    net.run(3 * L)
    assert {net.leader(n) for n in "abc"} == {("b", 1)}
    assert net.sent_by("a", LeaseMessage) == []  # it never even claimed
    assert net.members["b"].epoch == 1


def test_a_strictly_lower_rank_takes_over_only_when_the_lease_ends() -> None:
    net = Net(b=5, c=6)
    net.run(2.0)
    assert net.leader("c") == ("b", 1)
    view = net.members["b"].leader(net.now)
    assert view is not None
    lease_end = net.now + view.lease_remaining
    net.ranks["c"] = 1
    net.deliver("c", net.members["c"].set_rank(1, net.now))
    net.view_changed()
    net.run(L / 2)
    assert net.members["b"].is_leader(net.now)  # no preemption
    net.run(L)
    assert net.leader("b") == ("c", 2)
    begun = [m for s, _, m in net.log if s == "c" and isinstance(m, LeaseMessage)]
    assert begun  # c claimed, and only after b's lease
    assert not net.members["b"].is_leader(lease_end)


# ------------------------------------------------------------------ claims and renewals


def test_a_claim_needs_every_alive_eligible_member() -> None:
    net = Net(
        drop=lambda sender, to, m: sender == "c" and isinstance(m, VoteMessage), a=1, b=2, c=3
    )
    net.run(3.0)
    assert not net.members["a"].is_leader(net.now)
    net.drop = lambda sender, to, m: False
    net.run(2.0)
    assert net.members["a"].is_leader(net.now)


def test_a_renewal_needs_only_the_members_that_granted() -> None:
    net = Net(a=1, b=2)
    net.run(2.0)
    assert net.leader("b") == ("a", 1)
    # d joins and never answers: it was never needed, so the lease goes on.
    net.drop = lambda sender, to, m: "d" in (sender, to)
    net.add("d", 3)
    net.run(3 * L)
    assert net.members["a"].is_leader(net.now)
    assert net.members["a"].epoch == 1


def test_a_member_that_granted_and_then_falls_silent_costs_the_lease() -> None:
    # The converse: a voter that granted is needed until it is seen to fail or restart.
    net = Net(a=1, b=2)
    net.run(2.0)
    net.drop = lambda sender, to, m: sender == "b" and isinstance(m, VoteMessage)
    net.run(L + 1.0)
    assert not net.members["a"].is_leader(net.now)


def test_a_restarted_voter_keeps_the_leadership_in_office_by_granting_at_once() -> None:
    net = Net(a=1, b=2, c=3)
    net.run(2.0)
    assert net.leader("c") == ("a", 1)
    net.restart("c")
    net.run(3 * L)
    assert net.members["a"].is_leader(net.now)
    assert net.members["a"].epoch == 1
    assert net.leader("c") == ("a", 1)


def test_a_holder_needs_the_grant_of_a_member_it_told_of_its_lease() -> None:
    # c restarts and asks who leads; a answers. From then on a may not renew past
    # what c knows without c's grant: requests lost on the way to c would let a
    # renew beyond c's block, and c could claim once a dropped out of its sight.
    net = Net(a=1, b=2, c=3)
    net.run(2.0)
    net.restart("c")
    assert any(isinstance(m, ViewMessage) for s, t, m in net.log if (s, t) == ("a", "c"))
    net.drop = lambda sender, to, m: sender == "c" and isinstance(m, VoteMessage)
    net.run(L + 1.0)
    assert not net.members["a"].is_leader(net.now)


def test_a_voter_back_from_failure_must_grant_again_to_be_needed() -> None:
    net = Net(a=1, b=2, c=3)
    net.run(2.0)
    net.alive["c"] = False
    net.view_changed("a", "b")
    net.alive["c"] = True
    net.drop = lambda sender, to, m: sender == "c"
    net.view_changed("a", "b")
    net.run(3 * L)
    assert net.members["a"].is_leader(net.now)
    assert net.members["a"].epoch == 1


def test_steady_leadership_sends_one_request_per_eligible_member_a_beat_and_no_gossip() -> None:
    net = Net(a=1, b=2, c=3, x=None)
    net.run(3.0)
    net.log.clear()
    net.run(10 * BEAT, step=BEAT)
    requests = [(s, t) for s, t, m in net.log if isinstance(m, LeaseMessage)]
    assert {t for _, t in requests} == {"b", "c"}
    assert all(s == "a" for s, _ in requests)
    assert len(requests) == 2 * 10
    answers = [(s, t) for s, t, m in net.log if isinstance(m, VoteMessage)]
    assert len(answers) == 2 * 10
    assert {t for _, t in answers} == {"a"}
    # The member without a rank asks its relay about twice a lease, and nothing is gossiped.
    assert len([m for s, _, m in net.log if s == "x"]) <= 3
    assert not [m for m in net.log if isinstance(m[2], ReleaseMessage)]


def test_leadership_ending_is_gossiped_as_a_release() -> None:
    e = Election(CFG, "a", rank=1, now=0.0)
    e.tick(0.0)
    out = gossip(e.tick(L))
    assert ReleaseMessage("a", 1) in out


# ------------------------------------------------------------------ voters


def lease(holder: str, epoch: int, seq: int = 1, *, established: bool = False) -> bytes:
    return LeaseMessage(holder, epoch, seq, established, True, 0.0).to_bytes()


def votes(effects: list[Effect]) -> list[VoteMessage]:
    return [m for _, m in sends(effects) if isinstance(m, VoteMessage)]


def test_voter_grants_one_candidate_at_a_time_for_lease_plus_skew() -> None:
    v = Election(CFG, "v", rank=9, now=0.0)
    v.update_members(alive(a=1, b=2), 0.0)
    assert votes(v.receive(lease("a", 1), 0.0))[0].granted
    refused = votes(v.receive(lease("b", 2), 1.0))[0]
    assert not refused.granted
    assert refused.committed
    assert refused.retry_after == QUIET - 1.0
    assert not votes(v.receive(lease("b", 2), QUIET - 1e-6))[0].granted
    assert votes(v.receive(lease("b", 2), QUIET))[0].granted


@pytest.mark.parametrize("other", [L + 2.0, L - 2.0])
def test_voter_refuses_a_holder_with_another_lease_time_and_says_so_once(other: float) -> None:
    v = Election(CFG, "v", rank=9, now=0.0)
    v.update_members(alive(a=1), 0.0)
    out = v.receive(LeaseMessage("a", 1, 1, False, True, 0.0, None, other).to_bytes(), 0.0)
    (refused,) = votes(out)
    assert not refused.granted
    assert not refused.committed
    assert refused.retry_after == L
    assert [e for e in out if isinstance(e, SettingsDiffer)] == [SettingsDiffer("a", other)]
    again = v.receive(LeaseMessage("a", 1, 2, False, True, 0.0, None, other).to_bytes(), 1.0)
    assert not votes(again)[0].granted
    assert not [e for e in again if isinstance(e, SettingsDiffer)]
    # The same lease_time is granted; 0 (not stated) counts as the default.
    same = LeaseMessage("a", 2, 3, False, True, 0.0, None, L).to_bytes()
    assert votes(v.receive(same, 2.0))[0].granted
    w = Election(CFG, "w", rank=9, now=0.0)
    w.update_members(alive(a=1), 0.0)
    assert votes(w.receive(lease("a", 1), 0.0))[0].granted


def test_a_holder_that_varies_its_lease_time_is_reported_once() -> None:
    # A sender that changes the value on every request must not flood the log.
    v = Election(CFG, "v", rank=9, now=0.0)
    v.update_members(alive(a=1), 0.0)
    reports = []
    for seq in range(1, 21):
        other = L + seq
        out = v.receive(LeaseMessage("a", 1, seq, False, True, 0.0, None, other).to_bytes(), 0.1)
        assert not votes(out)[0].granted
        reports += [e for e in out if isinstance(e, SettingsDiffer)]
    assert reports == [SettingsDiffer("a", L + 1)]


def test_a_longer_lease_heard_of_blocks_claims_for_that_lease() -> None:
    # A holder that does not need us (we never granted) and trusts a longer lease
    # than ours: what we heard must keep us from claiming for its whole lease.
    short = ElectionConfig(lease_time=4.0, beat_interval=1.0, max_clock_skew=0.5)
    b = Election(short, "b", rank=1, now=0.0)
    b.update_members(alive(a=5), 0.0)
    b.receive(LeaseMessage("a", 3, 9, True, True, 20.0, None, 20.0).to_bytes(), 0.0)
    b.update_members({"a": MemberView(5, False)}, 1.0)
    run(b, 1.0, 20.0)
    assert b.role is Role.FOLLOWER
    run(b, 20.0, 21.0)
    assert b.is_leader(21.0)


def test_voter_grants_a_new_leadership_only_above_every_epoch_it_has_seen() -> None:
    v = Election(CFG, "v", rank=9, now=0.0)
    v.update_members(alive(a=1, b=2, c=3), 0.0)
    assert votes(v.receive(lease("a", 3), 0.0))[0].granted
    # c's claim is refused (v backs a), yet its epoch counts as seen.
    assert votes(v.receive(lease("c", 6), 1.0))[0].committed
    lower = votes(v.receive(lease("b", 3), QUIET))[0]
    assert not lower.granted
    assert not lower.committed
    assert lower.max_epoch == 6
    assert not votes(v.receive(lease("b", 5), QUIET))[0].granted
    assert votes(v.receive(lease("b", 6), QUIET))[0].granted
    assert votes(v.receive(lease("b", 6, seq=2), QUIET + 1))[0].granted


def test_a_vote_reports_the_epochs_seen_before_the_request() -> None:
    # Else a candidate would read its own epoch back as "used up" and climb forever.
    v = Election(CFG, "v", rank=9, now=0.0, epoch=2)
    v.update_members(alive(a=1), 0.0)
    vote = votes(v.receive(lease("a", 3), 0.0))[0]
    assert vote.granted
    assert vote.max_epoch == 2


def test_restarted_voter_backs_the_leadership_in_office_at_its_epoch() -> None:
    v = Election(CFG, "v", rank=9, now=100.0, epoch=4, life=2)
    v.update_members(alive(a=1), 100.0)
    assert votes(v.receive(lease("a", 4, seq=30, established=True), 100.5))[0].granted
    # But not a new claim at an epoch it may have granted before the restart.
    w = Election(CFG, "w", rank=9, now=100.0, epoch=4, life=2)
    w.update_members(alive(b=1), 100.0)
    assert not votes(w.receive(lease("b", 4), 100.5))[0].granted


def test_restarted_voter_in_quorum_mode_grants_nothing_until_old_grants_expired() -> None:
    v = Election(QUORUM, "v", rank=9, now=100.0)
    v.update_members(alive(a=1), 100.0)
    refused = votes(v.receive(lease("a", 1), 101.0))[0]
    assert not refused.granted
    assert not refused.committed
    assert refused.retry_after == QUIET - 1.0
    assert v.status(101.0).state == "restarted"


def test_voter_answers_only_alive_eligible_members() -> None:
    v = Election(CFG, "v", rank=9, now=0.0)
    v.update_members({"a": MemberView(1, False), "x": MemberView(None, True)}, 0.0)
    assert v.receive(lease("a", 1), 1.0) == []
    assert v.receive(lease("x", 1), 1.0) == []
    assert v.receive(lease("stranger", 1), 1.0) == []


def test_committed_refusal_keeps_the_candidate_back_after_the_voter_drops_out() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    claim = next(
        m for _, m in sends(a.update_members(alive(b=2), 0.0)) if isinstance(m, LeaseMessage)
    )
    busy = VoteMessage("b", "a", claim.epoch, claim.seq, False, 0, 8.0, 1, 0.0, True)
    a.receive(busy.to_bytes(), 0.1)
    assert a.role is Role.FOLLOWER
    # b is paused and declared failed: without it the claim would succeed at once.
    run(a, 0.1, 1.0)
    a.update_members({"b": MemberView(2, False)}, 1.0)
    run(a, 1.0, 8.0)
    assert not a.is_leader(8.0)
    assert a.status(8.0).state == "lease"
    run(a, 8.0, 9.2)
    assert a.is_leader(9.2)


def test_candidate_learns_higher_epoch_and_claims_above_it() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    claim = next(
        m for _, m in sends(a.update_members(alive(v=5), 0.0)) if isinstance(m, LeaseMessage)
    )
    assert (claim.epoch, claim.established) == (1, False)
    no = VoteMessage("v", "a", 1, claim.seq, False, 7, 0.0, 1, 0.0)
    again = next(m for _, m in sends(a.receive(no.to_bytes(), 0.01)) if isinstance(m, LeaseMessage))
    assert again.epoch == 8
    yes = VoteMessage("v", "a", 8, again.seq, True, 7, 0.0, 1, 0.0)
    out = sends(a.receive(yes.to_bytes(), 0.02))
    assert a.is_leader(0.02)
    assert any(isinstance(m, LeaseMessage) and m.established for _, m in out)


def test_votes_with_epochs_out_of_reach_or_from_strangers_change_nothing() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    claim = next(
        m for _, m in sends(a.update_members(alive(v=5), 0.0)) if isinstance(m, LeaseMessage)
    )
    far = VoteMessage("v", "a", 1, claim.seq, False, MAX_EPOCH_STEP + 5, 0.0, 1, 0.0)
    a.receive(far.to_bytes(), 0.01)
    assert a.epoch == 1
    stranger = VoteMessage("z", "a", 1, claim.seq, True, 1, 0.0, 1, 0.0)
    a.receive(stranger.to_bytes(), 0.02)
    assert not a.is_leader(0.02)


def test_quorum_leader_needs_a_majority_of_expected_voters() -> None:
    cfg = ElectionConfig(quorum=5)
    a = Election(cfg, "a", rank=1, now=0.0)
    a.update_members(alive(b=2, c=3, d=4, e=5), 0.0)
    claim = next(m for _, m in sends(run(a, 0.0, QUIET)) if isinstance(m, LeaseMessage))
    a.receive(VoteMessage("b", "a", claim.epoch, claim.seq, True, 0, 0.0).to_bytes(), QUIET)
    assert not a.is_leader(QUIET)
    a.receive(VoteMessage("c", "a", claim.epoch, claim.seq, True, 0, 0.0).to_bytes(), QUIET)
    assert a.is_leader(QUIET)
    # With only two of five in sight it stops renewing and its lease runs out.
    a.update_members(alive(b=2), QUIET + 0.5)
    out = sends(a.tick(QUIET + 1.0))
    assert all(isinstance(m, LeaseMessage) and not m.request for _, m in out)
    assert not a.is_leader(QUIET + L)


# ------------------------------------------------------------------ views


def follower_with_stamp(now: float = 50.0) -> tuple[Election, float]:
    """A voter that granted a's claim: its vote's stamp is what a echoes next."""
    f = Election(CFG, "f", rank=9, now=0.0)
    f.update_members(alive(a=1), 0.0)
    vote = votes(f.receive(lease("a", 4), now))[0]
    return f, vote.stamp


def renewal(seq: int, remaining: float, echo: Echo | None) -> bytes:
    return LeaseMessage("a", 4, seq, True, True, remaining, echo).to_bytes()


def test_follower_names_the_leader_only_on_an_echo_of_its_own_stamp() -> None:
    f, stamp = follower_with_stamp()
    f.receive(renewal(2, 9.0, None), 51.0)
    assert f.leader(51.0) is None
    f.receive(renewal(3, 9.0, Echo(stamp + 0.5, 0.2)), 51.5)  # not a stamp f sent
    assert f.leader(51.5) is None
    f.receive(renewal(4, 9.0, Echo(stamp, 0.2)), 52.0)
    view = f.leader(52.0)
    assert view is not None
    assert (view.name, view.epoch, view.is_self) == ("a", 4, False)


def test_a_view_ends_no_later_than_the_lease_counted_from_the_echoed_stamp() -> None:
    f, stamp = follower_with_stamp(50.0)
    # Held 0.5 s by the holder, 9 s of lease left at its send, received 3 s late.
    f.receive(renewal(2, 9.0, Echo(stamp, 0.5)), 53.5)
    view = f.leader(53.5)
    assert view is not None
    k = (1 - CFG.max_drift) / (1 + CFG.max_drift)
    assert view.lease_remaining == stamp + 0.5 * k + 9.0 * k - 53.5
    assert f.leader(stamp + 9.5) is None


def test_a_late_copy_cannot_revive_a_lease() -> None:
    f, stamp = follower_with_stamp(50.0)
    copy = renewal(2, 9.0, Echo(stamp, 0.1))
    f.receive(copy, 50.2)
    assert f.leader(58.0) is not None
    # The same renewal, delivered again a minute later (a re-sent copy, a queue
    # drained after a pause): the view stays where its echo put it.
    f.receive(copy, 110.0)
    assert f.leader(110.0) is None


def test_views_never_go_back_in_epoch() -> None:
    f = Election(CFG, "f", rank=None, now=0.0)
    asked = sends(f.update_members(alive(a=1, b=2), 0.0))
    inquiry = next(m for _, m in asked if isinstance(m, InquiryMessage))
    assert isinstance(inquiry, InquiryMessage)
    echo = Echo(inquiry.stamp, 0.0)
    # Two leaderships in view (after a partition heals): the higher epoch is reported.
    f.receive(ViewMessage("b", "a", 5, 9.0, 11.0, echo).to_bytes(), 0.1)
    assert f.leader(0.1) is not None
    f.receive(ViewMessage("a", "b", 7, 9.0, 11.0, echo).to_bytes(), 0.2)
    view = f.leader(0.2)
    assert view is not None
    assert (view.name, view.epoch) == ("b", 7)
    # b's ends first: a's, though still fresh, has a lower epoch than one reported.
    f.receive(ReleaseMessage("b", 7).to_bytes(), 0.3)
    assert f.leader(0.3) is None
    # Nor is a lower epoch taken up afresh.
    f.receive(ViewMessage("b", "a", 6, 9.0, 11.0, echo).to_bytes(), 0.4)
    assert f.leader(0.4) is None


def test_a_member_without_a_rank_asks_one_relay_when_its_view_runs_low() -> None:
    x = Election(CFG, "x", rank=None, now=0.0)
    out = sends(x.update_members(alive(a=1, b=2, c=3), 0.0))
    asked = [to for to, m in out if isinstance(m, InquiryMessage)]
    assert len(asked) == 1
    relay = asked[0]
    # Nobody leads: it waits a quarter lease before asking again.
    inquiry_stamp = 0.0
    x.receive(ViewMessage(relay, None, 0, 0.0, 0.0, Echo(inquiry_stamp, 0.0)).to_bytes(), 0.1)
    assert sends(x.tick(1.0)) == []
    assert [to for to, _ in sends(x.tick(L / 4 + 0.2))] == [relay]
    # A leader: it asks again only when less than half a lease is left.
    answer = ViewMessage(relay, "a", 1, 9.0, 11.0, Echo(L / 4 + 0.2, 0.0))
    x.receive(answer.to_bytes(), L / 4 + 0.3)
    assert x.leader(L / 4 + 0.3) is not None
    quiet = run(x, L / 4 + 0.4, L / 4 + 3.5)
    assert sends(quiet) == []
    later = sends(run(x, L / 4 + 3.5, L / 4 + 5.0))
    assert [to for to, _ in later] == [relay]


def test_inquiries_are_answered_with_the_leadership_known() -> None:
    net = Net(a=1, b=2)
    net.run(2.0)
    b = net.members["b"]
    question = InquiryMessage("a", 1, 123.0).to_bytes()
    answer = sends(b.receive(question, net.now))
    assert len(answer) == 1
    to, message = answer[0]
    assert to == "a"
    assert isinstance(message, ViewMessage)
    assert (message.holder, message.epoch, message.echo) == ("a", 1, Echo(123.0, 0.0))


# ------------------------------------------------------------------ step-down, pauses, time


def test_lower_token_leader_steps_down_and_releases_when_leaders_meet() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    a.tick(0.0)
    a.update_members(alive(b=2), 0.5)
    out = a.receive(LeaseMessage("b", 2, 1, True, True, 9.0).to_bytes(), 1.0)
    assert not a.is_leader(1.0)
    assert ReleaseMessage("a", 1) in gossip(out)


def test_release_frees_a_voter_and_ends_the_view() -> None:
    net = Net(a=1, b=2)
    net.run(2.0)
    b = net.members["b"]
    b.receive(ReleaseMessage("a", 1).to_bytes(), net.now)
    assert b.leader(net.now) is None


def test_gap_in_clock_readings_blocks_claims_and_asks_again() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    a.update_members(alive(b=5), 0.0)
    a.tick(0.5)
    # Pretend the process was paused for 30 s: it must ask and listen again first.
    out = sends(a.tick(31.0))
    assert [type(m) for _, m in out] == [InquiryMessage]
    assert a.status(31.0).state == "paused"
    run(a, 31.0, 31.0 + QUIET - 0.5)
    assert a.role is Role.FOLLOWER


def test_rank_change_does_not_cut_the_lease_short() -> None:
    a = Election(CFG, "a", rank=5, now=0.0)
    a.tick(0.0)
    t = 0.5
    a.update_members(alive(b=1), t)
    assert a.is_leader(t)
    out = sends(a.tick(t + BEAT))
    assert out
    assert all(isinstance(m, LeaseMessage) and m.established and not m.request for _, m in out)
    assert a.is_leader(L - 0.01)
    assert not a.is_leader(L)


def test_time_going_backwards_is_ignored() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    a.tick(0.0)
    a.tick(-5.0)
    assert a.is_leader(1.0)


def test_next_deadline_is_always_ahead() -> None:
    net = Net(a=1, b=2, x=None)
    for _ in range(30):
        net.run(0.37)
        for member in net.members.values():
            assert net.now < member.next_deadline() <= net.now + BEAT


def test_epochs_above_the_ceiling_are_not_in_reach() -> None:
    import pytest

    from controlplane.election import MAX_EPOCH

    election = Election(ElectionConfig(), "a", rank=1, now=0.0, epoch=MAX_EPOCH - 1)
    assert election._epoch_in_reach(MAX_EPOCH)
    assert not election._epoch_in_reach(MAX_EPOCH + 1)
    with pytest.raises(ValueError, match="epoch"):
        Election(ElectionConfig(), "a", rank=1, now=0.0, epoch=MAX_EPOCH + 1)
