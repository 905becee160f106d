"""Paged ListMembers and ListClients (AIP-158), their limits, and the member proto cache.

ListMembers runs against a real membership layer holding a fleet of 5,000 members
(restored from one push-pull state, as a joining agent receives it); ListClients
against the heartbeat tracker. Servicer methods are called directly: domain errors
surface as the exceptions the gRPC edge maps to statuses.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import pytest

import controlplane.api.membership as membership_api
from controlplane.api.heartbeat import HeartbeatRpcs
from controlplane.api.hub import EventHub
from controlplane.api.membership import MembershipService
from controlplane.api.paging import (
    MAX_PAGE_SIZE,
    MAX_PUBLIC_MESSAGE_BYTES,
    filters_digest,
    page_request,
    take_page,
)
from controlplane.errors import InvalidArgument, ResourceExhausted
from controlplane.gossip import PROFILES, codec
from controlplane.heartbeat.tracker import HeartbeatTracker
from controlplane.membership import Membership, MembershipConfig, MemberStatus, messages
from controlplane.membership.tags import encode_tags
from controlplane.v1 import membership_pb2 as pb
from controlplane.v1 import server_pool_pb2 as pool_pb
from controlplane.wire.v1 import gossip_pb2
from tests.unit.membership.helpers import datagram

FLEET = 5000
NO_CONTEXT = cast(Any, None)
ALIVE, LEAVING = pb.MEMBER_STATUS_ALIVE, pb.MEMBER_STATUS_LEAVING


def fleet(n: int = FLEET) -> Membership:
    """An agent that learned `n` members from one push-pull state, as on joining a fleet."""
    layer = Membership(
        PROFILES["lan"](),
        MembershipConfig(),
        "agent",
        ("127.0.0.1", 7946),
        tags={"role": "server", "api_version": "1.0"},
        rng=random.Random(1),
        now=0.0,
    )
    state = gossip_pb2.PushPullState(protocol_version=codec.PROTOCOL_VERSION)
    times = {}
    for i in range(n):
        name = f"member-{i:05d}"
        tags = {"role": "client", "dc": f"dc{i % 3}", "service_port": "8080"}
        state.members.add(
            name=name,
            address=gossip_pb2.Address(host=f"127.1.{i // 250}.{i % 250 + 1}", port=7946),
            meta=encode_tags(tags),
            incarnation=1,
            status=gossip_pb2.MEMBER_STATUS_ALIVE,
        )
        times[name] = 2
    state.user_state = messages.encode_state(5, times, [], 1, [])
    frame = codec.seal(codec.frame_header("", False), state.SerializeToString(), None)
    layer.handle_push_pull(("127.1.0.1", 7946), frame, 0.0)
    return layer


@pytest.fixture(scope="module")
def layer() -> Membership:
    return fleet()


def service(layer: Membership) -> MembershipService:
    return MembershipService(
        layer, cast(Any, None), EventHub(), default_port=7946, leave=cast(Any, None)
    )


def join(layer: Membership, name: str, now: float = 1.0) -> None:
    alive = codec.encode_alive(1, name, ("127.9.0.1", 7946), encode_tags({"role": "client"}))
    layer.receive_packet(("127.9.0.1", 7946), datagram(alive), now)


async def list_all(svc: MembershipService, **filters: Any) -> list[str]:
    """Every name, page by page, checking the pages' bounds on the way."""
    names: list[str] = []
    token = ""
    for _ in range(FLEET):  # a paging bug must fail, not loop forever
        request = pb.ListMembersRequest(page_token=token, **filters)
        page = await svc.ListMembers(request, NO_CONTEXT)
        assert len(page.members) <= (request.page_size or MAX_PAGE_SIZE)
        names += [m.name for m in page.members]
        token = page.next_page_token
        if not token:
            return names
    raise AssertionError("paging did not end")


# ---------------------------------------------------------------- page requests


def test_page_size_zero_without_a_token_means_everything() -> None:
    page = page_request(0, "", "d")
    assert (page.size, page.after) == (None, None)


@pytest.mark.parametrize(("asked", "got"), [(1, 1), (999, 999), (1000, 1000), (1001, 1000)])
def test_page_sizes_above_the_maximum_are_coerced(asked: int, got: int) -> None:
    assert page_request(asked, "", "d").size == got


def test_page_size_zero_with_a_token_means_the_maximum() -> None:
    token = page_request(5, "", "d").token_after("m")
    page = page_request(0, token, "d")
    assert (page.size, page.after) == (MAX_PAGE_SIZE, "m")


def test_a_negative_page_size_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as refused:
        page_request(-1, "", "d")
    assert refused.value.violations[0].field == "page_size"
    assert "1000" in refused.value.message


@pytest.mark.parametrize(
    "token",
    ["garbage!", "e30", "x" * 3000, page_request(1, "", "other-filters").token_after("m")],
)
def test_bad_tokens_are_refused_naming_page_token(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        page_request(1, token, "d")
    assert refused.value.violations[0].field == "page_token"


def test_tokens_roundtrip_any_key() -> None:
    for key in ["a", "é" * 128, "\x00\n\"'", "member-00042"]:
        token = page_request(1, "", "d").token_after(key)
        assert token.isascii()
        assert page_request(1, token, "d").after == key


def test_a_whole_list_too_large_for_one_response_asks_for_pages() -> None:
    items = [f"k{i:03d}" for i in range(100)]
    with pytest.raises(ResourceExhausted) as refused:
        take_page(items, page_request(0, "", "d"), lambda _: 100, str, budget=5000)
    assert "page_size" in refused.value.message
    assert "4 MiB" in refused.value.message
    page, token = take_page(items, page_request(90, "", "d"), lambda _: 100, str, budget=5000)
    # Fewer than asked (the budget holds 49 entries of 102 bytes), and a token to go on.
    assert (len(page), page_request(1, token, "d").after) == (49, "k048")


def test_the_last_page_has_no_token_even_when_exactly_full() -> None:
    items = ["a", "b", "c", "d"]
    assert take_page(items, page_request(4, "", "d"), len, str) == (items, "")
    page, token = take_page(items, page_request(3, "", "d"), len, str)
    assert page == ["a", "b", "c"]
    assert token


# ---------------------------------------------------------------- ListMembers


async def test_without_paging_every_member_comes_in_name_order(layer: Membership) -> None:
    answer = await service(layer).ListMembers(pb.ListMembersRequest(), NO_CONTEXT)
    names = [m.name for m in answer.members]
    assert len(names) == FLEET + 1
    assert names == sorted(names)
    assert answer.next_page_token == ""


async def test_pages_concatenate_to_the_whole_list(layer: Membership) -> None:
    svc = service(layer)
    whole = [m.name for m in (await svc.ListMembers(pb.ListMembersRequest(), NO_CONTEXT)).members]
    assert await list_all(svc, page_size=1000) == whole
    assert await list_all(svc, page_size=777) == whole
    # Above the maximum: pages of 1000.
    first = await svc.ListMembers(pb.ListMembersRequest(page_size=100_000), NO_CONTEXT)
    assert len(first.members) == MAX_PAGE_SIZE


async def test_filters_apply_before_paging(layer: Membership) -> None:
    svc = service(layer)
    filters: dict[str, Any] = {"tags": {"dc": "dc1"}, "statuses": [ALIVE]}
    whole = await svc.ListMembers(pb.ListMembersRequest(**filters), NO_CONTEXT)
    paged = await list_all(svc, page_size=300, **filters)
    assert paged == [m.name for m in whole.members]
    assert len(paged) == len([i for i in range(FLEET) if i % 3 == 1])
    first = await svc.ListMembers(pb.ListMembersRequest(page_size=300, **filters), NO_CONTEXT)
    assert len(first.members) == 300


async def test_a_token_is_bound_to_its_filters(layer: Membership) -> None:
    svc = service(layer)
    first = await svc.ListMembers(
        pb.ListMembersRequest(page_size=10, name_pattern="member-0.*"), NO_CONTEXT
    )
    # The same filters in another order are the same filters.
    again = pb.ListMembersRequest(
        page_size=10, name_pattern="member-0.*", page_token=first.next_page_token
    )
    assert len((await svc.ListMembers(again, NO_CONTEXT)).members) == 10
    other = pb.ListMembersRequest(
        page_size=10, name_pattern="member-1.*", page_token=first.next_page_token
    )
    with pytest.raises(InvalidArgument) as refused:
        await svc.ListMembers(other, NO_CONTEXT)
    assert refused.value.violations[0].field == "page_token"
    clients = HeartbeatRpcs(
        cast(Any, layer), HeartbeatTracker(random.Random(0)), lambda: 0.0, lambda: None
    )
    with pytest.raises(InvalidArgument):
        await clients.ListClients(
            pool_pb.ListClientsRequest(page_token=first.next_page_token), NO_CONTEXT
        )


def test_filter_digests_ignore_order_only() -> None:
    a = membership_api.MemberFilter(
        pb.ListMembersRequest(statuses=[ALIVE, LEAVING], tags={"a": "x"})
    )
    b = membership_api.MemberFilter(
        pb.ListMembersRequest(statuses=[LEAVING, ALIVE, LEAVING], tags={"a": "x"})
    )
    c = membership_api.MemberFilter(pb.ListMembersRequest(statuses=[ALIVE], tags={"a": "x"}))
    assert a.digest == b.digest != c.digest
    assert filters_digest("ListMembers") != filters_digest("ListClients")


def prune(layer: Membership, name: str, now: float) -> None:
    dead = codec.encode_dead(1, name, "someone-else")
    layer.receive_packet(("127.9.0.1", 7946), datagram(dead), now)
    assert layer.member(name).status is MemberStatus.FAILED
    layer.force_leave(name, True, now)
    assert layer.member(name) is None


async def test_members_joining_or_leaving_between_pages_shift_nothing() -> None:
    layer = fleet(300)
    svc = service(layer)
    first = await svc.ListMembers(pb.ListMembersRequest(page_size=100), NO_CONTEXT)
    seen = [m.name for m in first.members]
    assert seen[-1] == "member-00098"  # "agent" sorts first
    # Members vanish and appear on both sides of the cursor.
    prune(layer, "member-00010", 2.0)
    prune(layer, "member-00200", 2.0)
    join(layer, "member-00050a")
    join(layer, "member-00150a")
    token = first.next_page_token
    for _ in range(100):
        page = await svc.ListMembers(
            pb.ListMembersRequest(page_size=100, page_token=token), NO_CONTEXT
        )
        seen += [m.name for m in page.members]
        token = page.next_page_token
        if not token:
            break
    # Nothing skipped, nothing repeated: what was listed, and what is listed now
    # after the cursor; behind the cursor nothing moves.
    expected = {"agent", *(f"member-{i:05d}" for i in range(300)), "member-00150a"}
    assert seen == sorted(expected - {"member-00200"})


async def test_tag_filters_are_limited(layer: Membership) -> None:
    svc = service(layer)
    tags = {f"k{i}": ".*" for i in range(32)}
    await svc.ListMembers(pb.ListMembersRequest(tags=tags, page_size=1), NO_CONTEXT)
    with pytest.raises(InvalidArgument) as too_many:
        await svc.ListMembers(pb.ListMembersRequest(tags={**tags, "k32": ".*"}), NO_CONTEXT)
    assert too_many.value.violations[0].field == "tags"
    assert "32" in too_many.value.message
    await svc.ListMembers(pb.ListMembersRequest(tags={"k" * 128: ".*"}), NO_CONTEXT)
    with pytest.raises(InvalidArgument) as long_key:
        await svc.ListMembers(pb.ListMembersRequest(tags={"k" * 129: ".*"}), NO_CONTEXT)
    assert long_key.value.violations[0].field == "tags"
    assert "128 bytes" in long_key.value.message
    with pytest.raises(InvalidArgument) as long_pattern:
        await svc.ListMembers(pb.ListMembersRequest(tags={"dc": "x" * 257}), NO_CONTEXT)
    assert long_pattern.value.violations[0].field == "tags[dc]"
    with pytest.raises(InvalidArgument) as statuses:
        await svc.ListMembers(pb.ListMembersRequest(statuses=[ALIVE] * 17), NO_CONTEXT)
    assert statuses.value.violations[0].field == "statuses"


async def test_patterns_match_characters_not_bytes() -> None:
    layer = fleet(1)
    layer.update_tags({"city": "Zürich"}, (), 1.0)
    svc = service(layer)
    for pattern, names in [("Z.rich", ["agent"]), ("Z..rich", []), ("[^a-z]+rich", ["agent"])]:
        answer = await svc.ListMembers(pb.ListMembersRequest(tags={"city": pattern}), NO_CONTEXT)
        assert [m.name for m in answer.members] == names, pattern


async def test_member_protos_are_built_once_per_change(
    layer: Membership, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    convert = membership_api.member_to_proto

    def counting(member: Any) -> pb.Member:
        built.append(member.name)
        return convert(member)

    monkeypatch.setattr(membership_api, "member_to_proto", counting)
    svc = service(layer)
    await svc.ListMembers(pb.ListMembersRequest(), NO_CONTEXT)
    assert len(built) == FLEET + 1
    built.clear()
    await svc.ListMembers(pb.ListMembersRequest(page_size=10), NO_CONTEXT)
    await svc.ListMembers(pb.ListMembersRequest(tags={"dc": "dc2"}), NO_CONTEXT)
    # The watch's first message, the snapshot, shares the same protos.
    stream = cast(
        AsyncGenerator[pb.WatchMembersResponse, None],
        svc.WatchMembers(pb.WatchMembersRequest(), NO_CONTEXT),
    )
    snapshot = await anext(stream)
    await stream.aclose()
    assert len(snapshot.members) == FLEET + 1
    assert built == []
    layer.update_tags({"zone": "z1"}, (), 5.0)
    answer = await svc.ListMembers(pb.ListMembersRequest(name_pattern="agent"), NO_CONTEXT)
    assert built == ["agent"]
    assert answer.members[0].tags["zone"] == "z1"


async def test_listing_a_fleet_takes_well_under_100_ms(layer: Membership) -> None:
    svc = service(layer)
    await svc.ListMembers(pb.ListMembersRequest(), NO_CONTEXT)
    timings = {}
    for label, request in {
        "whole": pb.ListMembersRequest(),
        "page": pb.ListMembersRequest(page_size=1000),
        "filtered": pb.ListMembersRequest(tags={"dc": "dc[0-9]"}, statuses=[ALIVE]),
        "named": pb.ListMembersRequest(name_pattern="member-[0-4].*"),
    }.items():
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            answer = await svc.ListMembers(request, NO_CONTEXT)
            answer.SerializeToString()
            best = min(best, time.perf_counter() - started)
        timings[label] = best
    assert max(timings.values()) < 0.1, timings


def test_the_member_limits_keep_a_full_page_under_the_message_limit() -> None:
    widest = pb.Member(
        name="n" * 128,
        address="f" * 39,
        port=65535,
        tags={"k": "v" * 500},
        status=pb.MEMBER_STATUS_FAILED,
        protocol=pb.ProtocolVersions(protocol_min=1, protocol_max=1, protocol_current=1),
        incarnation=2**64 - 1,
    )
    assert MAX_PAGE_SIZE * (widest.ByteSize() + 3) < MAX_PUBLIC_MESSAGE_BYTES


# ---------------------------------------------------------------- ListClients


def heartbeats(clients: int, metadata: dict[str, str]) -> HeartbeatRpcs:
    tracker = HeartbeatTracker(random.Random(0))
    for i in range(clients):
        tracker.record(f"client-{i:05d}", "ipv4:127.0.0.1:5000", (1, 0), metadata, now=0.0)
    layer = fleet(1)
    return HeartbeatRpcs(layer, tracker, lambda: 1.0, lambda: None)


async def list_clients(rpcs: HeartbeatRpcs, page_size: int) -> list[pool_pb.ListClientsResponse]:
    pages = []
    token = ""
    for _ in range(10_000):  # a paging bug must fail, not loop forever
        request = pool_pb.ListClientsRequest(page_size=page_size, page_token=token)
        page = await rpcs.ListClients(request, NO_CONTEXT)
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages
    raise AssertionError("paging did not end")


async def test_clients_page_by_id() -> None:
    rpcs = heartbeats(25, {"zone": "z"})
    whole = await rpcs.ListClients(pool_pb.ListClientsRequest(), NO_CONTEXT)
    ids = [c.client_id for c in whole.clients]
    assert ids == [f"client-{i:05d}" for i in range(25)]
    assert whole.next_page_token == ""
    pages = await list_clients(rpcs, 10)
    assert [len(p.clients) for p in pages] == [10, 10, 5]
    assert [c.client_id for p in pages for c in p.clients] == ids
    with pytest.raises(InvalidArgument) as negative:
        await rpcs.ListClients(pool_pb.ListClientsRequest(page_size=-5), NO_CONTEXT)
    assert negative.value.violations[0].field == "page_size"


async def test_client_pages_stay_under_the_message_limit() -> None:
    # The largest metadata a heartbeat may carry: 16 entries of 256 bytes.
    metadata = {f"key{i:02d}": "v" * 251 for i in range(16)}
    rpcs = heartbeats(1100, metadata)
    with pytest.raises(ResourceExhausted) as whole:
        await rpcs.ListClients(pool_pb.ListClientsRequest(), NO_CONTEXT)
    assert "page_size" in whole.value.message
    assert "4 MiB" in whole.value.message
    pages = await list_clients(rpcs, 1000)
    assert len(pages[0].clients) < 1000  # cut short by bytes, not by count
    assert all(p.ByteSize() <= MAX_PUBLIC_MESSAGE_BYTES for p in pages)
    ids = [c.client_id for p in pages for c in p.clients]
    assert ids == [f"client-{i:05d}" for i in range(1100)]


async def test_a_filter_matching_few_members_still_yields_between_windows(
    layer: Membership, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Count the filter's checks between two yields to the loop: a filter that
    # matches almost nobody must not scan the whole fleet in one callback.
    checks = [0]
    most_between_yields = [0]
    matches = membership_api.MemberFilter.matches

    def counting(self: membership_api.MemberFilter, member: Any) -> bool:
        checks[0] += 1
        most_between_yields[0] = max(most_between_yields[0], checks[0])
        return matches(self, member)

    async def yielding(_delay: float) -> None:
        checks[0] = 0

    monkeypatch.setattr(membership_api.MemberFilter, "matches", counting)
    monkeypatch.setattr(asyncio, "sleep", yielding)
    request = pb.ListMembersRequest(name_pattern="member-0499.")
    page = await service(layer).ListMembers(request, NO_CONTEXT)
    assert [m.name for m in page.members] == [f"member-0499{i}" for i in range(10)]
    assert most_between_yields[0] <= membership_api.LIST_SLICE


def test_a_deeply_nested_page_token_is_refused_as_invalid() -> None:
    import base64

    from controlplane.api.paging import page_request
    from controlplane.errors import InvalidArgument

    # Within MAX_PAGE_TOKEN_CHARS, deeper than json's recursion limit: it was INTERNAL.
    token = base64.urlsafe_b64encode(b"[" * 1200).decode().rstrip("=")
    with pytest.raises(InvalidArgument, match="not a page token of this API"):
        page_request(10, token, "digest")
