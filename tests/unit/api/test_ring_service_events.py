"""RingService follows membership one event at a time and merges gossip in batches.

Membership events re-read only the members they name (never the whole member
list); registrations from gossip, from a peer's state and from ``rings.state`` are
merged in one batch each, held to the registration cap, and only the rings that
changed are announced.
"""

from __future__ import annotations

import logging
from types import MappingProxyType

import pytest

from controlplane.api.ring import RegistrationStore, RingService
from controlplane.errors import ResourceExhausted
from controlplane.membership import (
    ChannelDelivery,
    ChannelStateReceived,
    EventType,
    MemberEvent,
    MemberInfo,
    MemberStatus,
)
from controlplane.ring import HashRing
from controlplane.rings import directory as rings
from controlplane.rings.directory import RingDirectory, encode_registration, encode_state
from controlplane.v1 import ring_pb2


def info(
    name: str, address: str, ring: str = "cache", status: MemberStatus = MemberStatus.ALIVE
) -> MemberInfo:
    tags = MappingProxyType({"ring": ring, "service_port": "11211"})
    return MemberInfo(name, (address, 7946), tags, status, 1)


class FakeLayer:
    """The two reads RingService makes of the membership layer, counted."""

    name = "local"

    def __init__(self, *members: MemberInfo) -> None:
        self.current = {m.name: m for m in members}
        self.full_reads = 0

    def members(self) -> list[MemberInfo]:
        self.full_reads += 1
        return [self.current[name] for name in sorted(self.current)]

    def member(self, name: str) -> MemberInfo | None:
        return self.current.get(name)


def make_service(
    layer: FakeLayer,
    directory: RingDirectory | None = None,
    store: RegistrationStore | None = None,
    sent: list[bytes] | None = None,
) -> tuple[RingService, list[str]]:
    def send(channel: str, payload: bytes) -> None:
        if sent is not None:
            sent.append(payload)

    service = RingService(
        directory or RingDirectory("local"),
        layer,  # type: ignore[arg-type]
        send,
        lambda: 100.0,
        store,
    )
    published: list[str] = []
    service.changes.publish = published.append  # type: ignore[method-assign, assignment]
    return service, published


def ids(service: RingService, ring: str = "cache") -> list[str]:
    return [entry.id for entry in service._directory.view(ring).entries]


def test_member_events_update_only_the_members_they_name() -> None:
    layer = FakeLayer(info("a", "10.0.0.1"), info("b", "10.0.0.2", ring="sessions"))
    service, published = make_service(layer)
    assert layer.full_reads == 1  # the start-up pass
    assert ids(service) == ["10.0.0.1:11211"]

    layer.current["c"] = info("c", "10.0.0.3")
    service.on_member_event(MemberEvent(EventType.MEMBER_JOIN, (layer.current["c"],)))
    assert ids(service) == ["10.0.0.1:11211", "10.0.0.3:11211"]
    assert published == ["cache"]

    # A tag change moves a member between rings; both are announced, no other.
    layer.current["c"] = info("c", "10.0.0.3", ring="sessions")
    service.on_member_event(MemberEvent(EventType.MEMBER_UPDATE, (layer.current["c"],)))
    assert published == ["cache", "cache", "sessions"]
    assert ids(service, "sessions") == ["10.0.0.2:11211", "10.0.0.3:11211"]
    assert layer.full_reads == 1


def test_failed_and_reaped_members_leave_their_rings() -> None:
    layer = FakeLayer(info("a", "10.0.0.1"), info("b", "10.0.0.2"))
    service, published = make_service(layer)

    layer.current["a"] = info("a", "10.0.0.1", status=MemberStatus.FAILED)
    service.on_member_event(MemberEvent(EventType.MEMBER_FAILED, (layer.current["a"],)))
    assert ids(service) == ["10.0.0.2:11211"]

    reaped = layer.current.pop("b")
    service.on_member_event(MemberEvent(EventType.MEMBER_REAP, (reaped,)))
    assert ids(service) == []
    assert published == ["cache", "cache"]
    assert "b" not in service._directory._members
    assert layer.full_reads == 1


def test_the_layer_s_current_state_wins_over_a_stale_event() -> None:
    layer = FakeLayer(info("a", "10.0.0.1"))
    service, published = make_service(layer)
    # A reap reported after the member already rejoined: it stays.
    stale = info("a", "10.0.0.1", status=MemberStatus.LEFT)
    service.on_member_event(MemberEvent(EventType.MEMBER_REAP, (stale,)))
    assert ids(service) == ["10.0.0.1:11211"]
    assert published == []


def test_gossip_and_peer_state_are_held_to_the_cap(
    monkeypatch: pytest.MonkeyPatch, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(rings, "MAX_REGISTRATIONS", 2)
    store = RegistrationStore(str(tmp_path))
    service, published = make_service(FakeLayer(), store=store)
    peer = RingDirectory("peer")
    batch = [peer.prepare("r", f"10.1.0.{i}", 80, 1, {}) for i in range(1, 5)]

    with caplog.at_level(logging.WARNING, logger="controlplane.ring"):
        service.on_channel(ChannelStateReceived("ring", encode_state(batch)))
    assert ids(service, "r") == ["10.1.0.1:80", "10.1.0.2:80"]
    assert published == ["r"]
    assert "dropped 2 registrations" in caplog.text
    saved = rings.decode_state(store.path.read_bytes())
    assert saved is not None
    assert [r.id for r in saved] == ["10.1.0.1:80", "10.1.0.2:80"]

    extra = peer.prepare("r", "10.1.0.9", 80, 1, {})
    service.on_channel(ChannelDelivery("ring", "peer", encode_registration(extra)))
    assert ids(service, "r") == ["10.1.0.1:80", "10.1.0.2:80"]
    assert published == ["r"]
    assert service._directory.registrations_dropped == 3


def test_the_store_is_replayed_in_one_merge_and_held_to_the_cap(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    store = RegistrationStore(str(tmp_path))
    peer = RingDirectory("peer")
    store.save(
        encode_state([peer.prepare(f"r{i % 2}", f"10.1.0.{i}", 80, 1, {}) for i in range(1, 11)])
    )
    monkeypatch.setattr(rings, "MAX_REGISTRATIONS", 6)
    merges: list[int] = []
    derivations: list[int] = []
    original_merge = RingDirectory.merge_registrations
    original_derive = HashRing.with_changes

    def counting_merge(self: RingDirectory, registrations, now):
        merges.append(1)
        return original_merge(self, registrations, now)

    def counting_derive(self: HashRing, add=(), remove=()):
        derivations.append(1)
        return original_derive(self, add, remove)

    monkeypatch.setattr(RingDirectory, "merge_registrations", counting_merge)
    monkeypatch.setattr(HashRing, "with_changes", counting_derive)
    service, _ = make_service(FakeLayer(), store=store)

    assert merges == [1]
    assert len(derivations) == 2  # one per ring
    assert service._directory.live_registrations == 6
    assert len(ids(service, "r0")) + len(ids(service, "r1")) == 6


def test_only_the_rings_a_message_changes_are_announced() -> None:
    layer = FakeLayer(info("a", "10.0.0.1"))
    service, published = make_service(layer)
    peer = RingDirectory("peer")
    first = peer.register("other", "10.1.0.1", 80, 1, {})
    service.on_channel(ChannelDelivery("ring", "peer", encode_registration(first)))
    assert published == ["other"]
    # The same message again changes nothing and announces nothing.
    service.on_channel(ChannelDelivery("ring", "peer", encode_registration(first)))
    service.on_channel(ChannelDelivery("ring", "peer", b"\xff garbage"))
    assert published == ["other"]
    assert service._directory.view("cache").version == 1


async def test_add_node_at_the_cap_is_refused() -> None:
    directory = RingDirectory("local", max_registrations=1)
    sent: list[bytes] = []
    service, _ = make_service(FakeLayer(), directory=directory, sent=sent)
    add = ring_pb2.AddNodeRequest(ring="r", address="10.0.0.1", port=80)
    await service.AddNode(add, None)  # type: ignore[arg-type]
    # Re-registering a kept node is an update, not a new registration.
    await service.AddNode(add, None)  # type: ignore[arg-type]
    with pytest.raises(ResourceExhausted, match="at most 1 registered"):
        await service.AddNode(
            ring_pb2.AddNodeRequest(ring="r", address="10.0.0.2", port=80),
            None,  # type: ignore[arg-type]
        )
    assert len(sent) == 2


def test_a_peer_state_equal_to_ours_or_seen_lately_is_not_decoded_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import controlplane.api.ring as ring_api

    decoded: list[bytes] = []
    real = rings.StateDecoder

    def counting(data: bytes) -> rings.StateDecoder:
        decoded.append(data)
        return real(data)

    monkeypatch.setattr(ring_api, "StateDecoder", counting)
    service, published = make_service(FakeLayer())
    peer = RingDirectory("peer")
    first = encode_state([peer.prepare("r", "10.1.0.1", 80, 1, {})])
    service.on_channel(ChannelStateReceived("ring", first))
    assert ids(service, "r") == ["10.1.0.1:80"]
    # Converged: the peer sends what we would send.
    service.on_channel(ChannelStateReceived("ring", service.local_state()))
    # The same state again, from the next push-pull with that peer.
    service.on_channel(ChannelStateReceived("ring", first))
    assert decoded == [first]
    assert published == ["r"]


async def test_a_large_peer_state_is_merged_a_slice_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    import controlplane.api.ring as ring_api

    monkeypatch.setattr(ring_api, "STATE_SLICE", 50)
    service, published = make_service(FakeLayer())
    peer = RingDirectory("peer")
    batch = [peer.prepare("r", f"10.1.{i // 200}.{i % 200 + 1}", 80, 1, {}) for i in range(1000)]
    state = encode_state(batch)
    assert len(state) > ring_api.INLINE_STATE_BYTES
    merged_slices: list[int] = []
    merge = service._merge

    def counting(registrations, now, source):
        merged_slices.append(len(registrations))
        return merge(registrations, now, source)

    monkeypatch.setattr(service, "_merge", counting)
    service.on_channel(ChannelStateReceived("ring", state))
    # Nothing merged inside the callback that delivered the state.
    assert merged_slices == []
    while service._merges:
        await asyncio.sleep(0)
    assert merged_slices == [50] * 20
    assert len(ids(service, "r")) == 1000
    assert set(published) == {"r"}


async def test_one_large_peer_state_is_merged_at_a_time() -> None:
    import asyncio

    service, _published = make_service(FakeLayer())
    first, second = RingDirectory("p1"), RingDirectory("p2")
    one = encode_state(
        [first.prepare("r", f"10.1.{i // 200}.{i % 200 + 1}", 80, 1, {}) for i in range(1000)]
    )
    two = encode_state(
        [second.prepare("s", f"10.2.{i // 200}.{i % 200 + 1}", 80, 1, {}) for i in range(1000)]
    )
    service.on_channel(ChannelStateReceived("ring", one))
    # A second large state while the first is still being merged is not taken up...
    service.on_channel(ChannelStateReceived("ring", two))
    assert len(service._merges) == 1
    while service._merges:
        await asyncio.sleep(0)
    assert ids(service, "s") == []
    # ...and is merged when its sender offers it again.
    service.on_channel(ChannelStateReceived("ring", two))
    while service._merges:
        await asyncio.sleep(0)
    assert len(ids(service, "s")) == 1000
