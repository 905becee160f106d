"""Simulated clusters with Serf queries: a :class:`MembershipSimCluster` whose members
each run a :class:`Queries` beside their layer, as the agent's shell does.

Query broadcasts travel as channel messages of the layers (gossip, with its
loss); acks and responses travel as simulated direct datagrams with the
network's fate, except on the member pairs cut with :meth:`cut_direct`. Every
query effect each member reported is recorded in :attr:`query_effects`; members
answer received queries with the function set in :attr:`answers` (by name).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

from controlplane.gossip.state import Address
from controlplane.membership import ChannelDelivery, ChannelStateReceived
from controlplane.membership.queries import (
    CHANNEL,
    BroadcastQuery,
    Queries,
    QueryParams,
    QueryReceived,
    SendReply,
)
from controlplane.membership.queries import Effect as QueryEffect
from controlplane.testing.membership_sim import MembershipSimCluster
from controlplane.testing.sim import SimMember

_E = TypeVar("_E", bound=QueryEffect)

# Answer to a received query: the response payload, or None to send none.
Answer = Callable[[QueryReceived], bytes | None]


class QuerySimCluster(MembershipSimCluster):
    """Members with queries on a simulated network; see the module docstring."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.queries: dict[str, Queries] = {}
        self.query_effects: dict[str, list[tuple[float, QueryEffect]]] = {}
        self.answers: dict[str, Answer] = {}
        # Direct datagrams between these (from, to) address pairs are lost.
        self._cut: set[tuple[Address, Address]] = set()

    def _make_member(self, name: str, address: Address, meta: bytes) -> SimMember:
        member = super()._make_member(name, address, meta)
        queries = Queries(self.layers[name], random.Random(self._rng.getrandbits(64)))
        self.queries[name] = queries
        self.layers[name].add_channel(CHANNEL, queries.local_state)
        self.query_effects.setdefault(name, [])
        return member

    def cut_direct(self, a: str, b: str) -> None:
        """Lose every direct datagram between ``a`` and ``b``, both ways (gossip still flows)."""
        first, second = self.members[a].address, self.members[b].address
        self._cut.update({(first, second), (second, first)})

    def ask(
        self,
        name: str,
        query: str,
        payload: bytes = b"",
        *,
        filter_nodes: Sequence[str] = (),
        filter_tags: Mapping[str, str] | None = None,
        request_ack: bool = False,
        relay_factor: int = 0,
        timeout: float = 0.0,
    ) -> int:
        params = QueryParams(
            query,
            payload,
            tuple(filter_nodes),
            dict(filter_tags or {}),
            request_ack,
            relay_factor,
            timeout,
        )
        query_id, _, effects = self.queries[name].ask(params, self.now)
        self._apply_queries(self.members[name], effects)
        return query_id

    def effects_of(self, name: str, kind: type[_E]) -> list[_E]:
        return [effect for _at, effect in self.query_effects[name] if isinstance(effect, kind)]

    # ------------------------------------------------------------------ effects

    def _apply(self, member: SimMember, effects: Sequence[object]) -> None:
        super()._apply(member, effects)
        queries = self.queries.get(member.name)
        if queries is None:
            return
        for effect in effects:
            if isinstance(effect, ChannelDelivery) and effect.channel == CHANNEL:
                self._apply_queries(member, queries.receive_query(effect.payload, self.now))
            elif isinstance(effect, ChannelStateReceived) and effect.channel == CHANNEL:
                queries.merge_state(effect.state)

    def _apply_queries(self, member: SimMember, effects: Sequence[QueryEffect]) -> None:
        now = self.now
        name = member.name
        queries = self.queries[name]
        for effect in effects:
            self.query_effects[name].append((now, effect))
            if isinstance(effect, BroadcastQuery):
                self.layers[name].send(CHANNEL, effect.data, now)
                self._reschedule(member)
            elif isinstance(effect, SendReply):
                self._send_direct(member, effect)
            elif isinstance(effect, QueryReceived):
                self.at(effect.deadline, partial(self._tick_queries, member))
                answer = self.answers.get(name)
                payload = None if answer is None else answer(effect)
                if payload is not None:
                    self._apply_queries(member, queries.respond(effect.handle, payload, now))
        deadline = queries.next_deadline()
        if deadline != float("inf"):
            self.at(max(deadline, now), partial(self._tick_queries, member))

    def _tick_queries(self, member: SimMember) -> None:
        if member.running:
            self._apply_queries(member, self.queries[member.name].tick(self.now))

    def _send_direct(self, member: SimMember, effect: SendReply) -> None:
        src = member.address
        if (src, effect.address) in self._cut:
            self.network.sent += 1
            self.network.lost += 1
            return
        target = self._by_address.get(effect.address)
        for delay in self.network.fate(src, effect.address):

            def deliver(target: SimMember | None = target, data: bytes = effect.data) -> None:
                if target is not None and target.running and not target.paused:
                    queries = self.queries[target.name]
                    self._apply_queries(target, queries.receive_reply(data, self.now))

            self.at(self.now + delay, deliver)
