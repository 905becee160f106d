"""The election state machine: claiming, grant rules, epochs, step-down, pauses."""

from __future__ import annotations

from controlplane.election import (
    Broadcast,
    Effect,
    Election,
    ElectionConfig,
    LeaderChanged,
    LeaseMessage,
    MemberView,
    ReleaseMessage,
    Role,
    VoteMessage,
    decode,
)

CFG = ElectionConfig()
QUIET = CFG.follower_lease


def broadcasts(effects: list[Effect]) -> list[object]:
    return [decode(e.data) for e in effects if isinstance(e, Broadcast)]


def run(e: Election, start: float, until: float) -> list[Effect]:
    """Tick every beat from ``start`` to ``until``, as a shell does; all effects."""
    effects: list[Effect] = []
    t = start
    while t < until:
        effects += e.tick(t)
        t += CFG.beat_interval
    return effects + e.tick(until)


def votes(effects: list[Effect]) -> list[VoteMessage]:
    return [m for m in broadcasts(effects) if isinstance(m, VoteMessage)]


def lease(holder: str, epoch: int, seq: int = 1, *, established: bool = False) -> bytes:
    return LeaseMessage(holder, epoch, seq, established, True, CFG.lease_time).to_bytes()


def test_single_member_listens_first_then_leads_with_epoch_one() -> None:
    e = Election(CFG, "a", rank=1, now=0.0)
    assert e.tick(1.0) == []
    assert e.leader(5.0) is None
    effects = run(e, 1.0, QUIET)
    assert e.is_leader(QUIET)
    assert e.epoch == 1
    changed = [x for x in effects if isinstance(x, LeaderChanged)]
    assert changed
    assert changed[-1].view is not None
    assert changed[-1].view.name == "a"
    assert changed[-1].view.is_self
    assert e.next_deadline() <= QUIET + CFG.beat_interval


def test_holder_alone_believes_exactly_lease_time_from_its_last_request() -> None:
    e = Election(CFG, "a", rank=1, now=0.0)
    run(e, 0.0, QUIET)
    view = e.leader(QUIET)
    assert view is not None
    assert view.lease_remaining == CFG.lease_time
    # Stop driving it: the lease lapses on its own clock, no tick needed.
    assert e.is_leader(QUIET + CFG.lease_time - 1e-9)
    assert not e.is_leader(QUIET + CFG.lease_time)


def test_unranked_member_never_claims_nor_votes() -> None:
    e = Election(CFG, "x", rank=None, now=0.0)
    assert broadcasts(e.tick(QUIET + 1)) == []
    assert e.receive(lease("a", 1), QUIET + 2) == []
    assert e.role is Role.FOLLOWER


def test_voter_grants_one_candidate_at_a_time_for_lease_plus_skew() -> None:
    v = Election(CFG, "v", rank=9, now=0.0)
    v.update_members({"a": MemberView(1, True), "b": MemberView(2, True)}, 0.0)
    t = QUIET
    assert votes(v.receive(lease("a", 1), t))[0].granted
    refused = votes(v.receive(lease("b", 2), t + 1.0))[0]
    assert not refused.granted
    assert refused.retry_after == CFG.follower_lease - 1.0
    # Still bound just before the grant runs out, free at the instant it does.
    assert not votes(v.receive(lease("b", 2), t + CFG.follower_lease - 1e-6))[0].granted
    assert votes(v.receive(lease("b", 2), t + CFG.follower_lease))[0].granted


def test_voter_never_grants_a_new_leadership_an_epoch_it_already_granted() -> None:
    v = Election(CFG, "v", rank=9, now=0.0)
    t = QUIET
    assert votes(v.receive(lease("a", 3), t))[0].granted
    later = t + CFG.follower_lease
    lower = votes(v.receive(lease("b", 3), later))[0]
    assert not lower.granted
    assert lower.max_epoch == 3
    assert votes(v.receive(lease("b", 4), later))[0].granted
    # The holder it backs may renew at the same epoch.
    assert votes(v.receive(lease("b", 4, seq=2), later + 1))[0].granted


def test_restarted_voter_grants_nothing_until_old_grants_expired() -> None:
    v = Election(CFG, "v", rank=9, now=100.0)
    refused = votes(v.receive(lease("a", 1), 101.0))[0]
    assert not refused.granted
    assert refused.retry_after == QUIET - 1.0


def test_candidate_learns_higher_epoch_and_claims_above_it() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    a.update_members({"v": MemberView(5, True)}, 0.0)
    out = broadcasts(run(a, 0.0, QUIET))
    claim = next(m for m in out if isinstance(m, LeaseMessage))
    assert claim.epoch == 1
    assert not claim.established
    # The voter has granted epoch 7 before: the claim is abandoned and retried higher.
    no = VoteMessage("v", "a", 1, claim.seq, False, 7, 0.0).to_bytes()
    retry = broadcasts(a.receive(no, QUIET + 0.01))
    again = next(m for m in retry if isinstance(m, LeaseMessage))
    assert again.epoch == 8
    yes = VoteMessage("v", "a", 8, again.seq, True, 8, 0.0).to_bytes()
    out = broadcasts(a.receive(yes, QUIET + 0.02))
    assert a.is_leader(QUIET + 0.02)
    assert a.epoch == 8
    # Becoming leader is announced at once as an established renewal.
    assert any(isinstance(m, LeaseMessage) and m.established for m in out)


def test_leader_needs_every_alive_eligible_member_without_quorum() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    a.update_members({"b": MemberView(2, True), "c": MemberView(3, True)}, 0.0)
    claim = next(m for m in broadcasts(run(a, 0.0, QUIET)) if isinstance(m, LeaseMessage))
    a.receive(VoteMessage("b", "a", 1, claim.seq, True, 1, 0.0).to_bytes(), QUIET)
    assert not a.is_leader(QUIET)
    a.receive(VoteMessage("c", "a", 1, claim.seq, True, 1, 0.0).to_bytes(), QUIET)
    assert a.is_leader(QUIET)


def test_quorum_leader_needs_a_majority_of_expected_voters() -> None:
    cfg = ElectionConfig(quorum=5)
    a = Election(cfg, "a", rank=1, now=0.0)
    view = {n: MemberView(r, True) for n, r in (("b", 2), ("c", 3), ("d", 4), ("e", 5))}
    a.update_members(view, 0.0)
    claim = next(m for m in broadcasts(run(a, 0.0, QUIET)) if isinstance(m, LeaseMessage))
    a.receive(VoteMessage("b", "a", 1, claim.seq, True, 1, 0.0).to_bytes(), QUIET)
    assert not a.is_leader(QUIET)
    a.receive(VoteMessage("c", "a", 1, claim.seq, True, 1, 0.0).to_bytes(), QUIET)
    assert a.is_leader(QUIET)
    # With only two of five in sight it stops renewing and its lease runs out.
    a.update_members({"b": MemberView(2, True)}, QUIET + 0.5)
    out = broadcasts(a.tick(QUIET + 1.0))
    assert all(isinstance(m, LeaseMessage) and not m.request for m in out)
    assert not a.is_leader(QUIET + CFG.lease_time)


def test_lower_token_leader_steps_down_and_releases_when_leaders_meet() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    run(a, 0.0, QUIET)
    assert a.is_leader(QUIET)
    out = broadcasts(a.receive(lease("b", 2, established=True), QUIET + 1))
    assert not a.is_leader(QUIET + 1)
    assert ReleaseMessage("a", 1) in out
    view = a.leader(QUIET + 1)
    assert view is not None
    assert (view.name, view.epoch) == ("b", 2)


def test_release_frees_a_voter() -> None:
    v = Election(CFG, "v", rank=9, now=0.0)
    v.receive(lease("a", 1, established=True), QUIET)
    v.receive(ReleaseMessage("a", 1).to_bytes(), QUIET + 1)
    assert v.leader(QUIET + 1) is None
    assert votes(v.receive(lease("b", 2), QUIET + 1))[0].granted


def test_follower_trusts_a_lease_for_lease_plus_skew_from_receipt() -> None:
    f = Election(CFG, "f", rank=None, now=0.0)
    f.receive(lease("a", 4, established=True), 50.0)
    view = f.leader(50.0)
    assert view is not None
    assert (view.name, view.epoch, view.is_self) == ("a", 4, False)
    assert view.lease_remaining == CFG.follower_lease
    assert f.leader(50.0 + CFG.follower_lease) is None
    # A winding-down announcement is trusted only for what is left, plus skew.
    f.receive(LeaseMessage("a", 4, 9, True, False, 2.0).to_bytes(), 60.0)
    view = f.leader(60.0)
    assert view is not None
    assert view.lease_remaining == 2.0 + CFG.max_clock_skew


def test_epoch_property_never_goes_down() -> None:
    f = Election(CFG, "f", rank=3, now=0.0, epoch=10)
    f.receive(lease("a", 4, established=True), 1.0)
    assert f.epoch == 10
    f.receive(lease("a", 12, established=True), 2.0)
    assert f.epoch == 12


def test_gap_in_clock_readings_blocks_claims_for_a_follower_lease() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    a.tick(1.0)
    # Pretend the process was paused for 30 s: it must listen again first.
    assert broadcasts(a.tick(31.0)) == []
    assert not a.is_leader(31.0 + QUIET - 0.5)
    run(a, 31.0, 31.0 + QUIET - 0.5)
    assert not a.is_leader(31.0 + QUIET - 0.5)
    run(a, 31.0 + QUIET - 0.5, 31.0 + QUIET)
    assert a.is_leader(31.0 + QUIET)


def test_rank_change_does_not_cut_the_lease_short() -> None:
    a = Election(CFG, "a", rank=5, now=0.0)
    run(a, 0.0, QUIET)
    t = QUIET + 0.5
    out = broadcasts(a.update_members({"b": MemberView(1, True)}, t))
    assert a.is_leader(t)
    # It stops asking for renewals but keeps announcing what is left.
    out += broadcasts(a.tick(t + CFG.beat_interval))
    assert out
    assert all(isinstance(m, LeaseMessage) and m.established and not m.request for m in out)
    assert a.is_leader(QUIET + CFG.lease_time - 0.01)
    assert not a.is_leader(QUIET + CFG.lease_time)


def test_time_going_backwards_is_ignored() -> None:
    a = Election(CFG, "a", rank=1, now=0.0)
    run(a, 0.0, QUIET)
    a.tick(QUIET - 5.0)
    assert a.is_leader(QUIET)
