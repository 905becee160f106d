"""AddNode and RemoveNode on a disk that fails: the RPC fails, nothing changes in
memory and nothing goes out; concurrent changes are all written."""

from __future__ import annotations

import asyncio
import errno
import logging
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.ring import RegistrationStore, RingService
from controlplane.configerror import ConfigError
from controlplane.errors import InvalidArgument, ResourceExhausted, Unavailable
from controlplane.membership import MemberInfo
from controlplane.rings.directory import RingDirectory, decode_state
from controlplane.v1 import ring_pb2
from tests.unit.api.test_ring_service_events import FakeLayer, make_service


class FailingStore(RegistrationStore):
    """Writes fail with `failure` while it is set."""

    failure: OSError | None = None

    def save(self, data: bytes) -> None:
        if self.failure is not None:
            raise self.failure
        super().save(data)


def add(node: str) -> ring_pb2.AddNodeRequest:
    return ring_pb2.AddNodeRequest(ring="cache", address=node, port=11211)


def stored_ids(store: RegistrationStore) -> list[tuple[str, bool]]:
    saved = decode_state(store.path.read_bytes())
    assert saved is not None
    return [(r.id, r.removed) for r in saved]


CONTEXT: Any = None


async def test_a_failed_write_fails_add_and_remove_and_changes_nothing(tmp_path: Path) -> None:
    store = FailingStore(str(tmp_path))
    sent: list[bytes] = []
    service, published = make_service(FakeLayer(), store=store, sent=sent)
    await service.AddNode(add("10.0.0.1"), CONTEXT)
    assert (len(sent), published) == (1, ["cache"])

    store.failure = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(ResourceExhausted, match=r"node 10\.0\.0\.2:11211 of ring .cache. was not"):
        await service.AddNode(add("10.0.0.2"), CONTEXT)
    store.failure = OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(Unavailable, match=r"removal of node 10\.0\.0\.1:11211 .* Read-only"):
        await service.RemoveNode(
            ring_pb2.RemoveNodeRequest(ring="cache", id="10.0.0.1:11211"), CONTEXT
        )

    # Neither kept, nor sent, nor announced: the agent holds what a restart reads.
    assert [e.id for e in service._directory.view("cache").entries] == ["10.0.0.1:11211"]
    assert (len(sent), published) == (1, ["cache"])
    assert stored_ids(store) == [("10.0.0.1:11211", False)]

    store.failure = None  # room again: the same requests succeed
    await service.AddNode(add("10.0.0.2"), CONTEXT)
    await service.RemoveNode(ring_pb2.RemoveNodeRequest(ring="cache", id="10.0.0.1:11211"), CONTEXT)
    assert stored_ids(store) == [("10.0.0.1:11211", True), ("10.0.0.2:11211", False)]
    service.close()


async def test_concurrent_adds_are_all_written(tmp_path: Path) -> None:
    store = RegistrationStore(str(tmp_path))
    service, _ = make_service(FakeLayer(), store=store)
    await asyncio.gather(*(service.AddNode(add(f"10.0.1.{i}"), CONTEXT) for i in range(1, 6)))
    assert len(stored_ids(store)) == 5
    service.close()


async def test_background_write_failures_are_logged_once_then_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FailingStore(str(tmp_path))
    store.failure = OSError(errno.ENOSPC, "No space left on device")
    with caplog.at_level(logging.WARNING, logger="controlplane.ring"):
        for data in (b"", b""):
            store.save_in_background(data)
            await asyncio.sleep(0.05)
        store.failure = None
        store.save_in_background(b"")
        await asyncio.sleep(0.05)
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "cannot write" in m]) == 1
    assert any("written again after 2 failed writes" in m for m in messages)
    store.close()


def test_a_damaged_or_unreadable_file_stops_the_start(tmp_path: Path) -> None:
    store = RegistrationStore(str(tmp_path))
    store.path.write_bytes(b"\xff\xff not a ring state")
    with pytest.raises(ConfigError, match="is damaged; move it aside"):
        make_service(FakeLayer(), store=store)
    store.path.unlink()
    store.path.mkdir()
    with pytest.raises(ConfigError, match="cannot be read"):
        make_service(FakeLayer(), store=store)


class _NoMembers:
    name = "a"

    def members(self) -> list[MemberInfo]:
        return []


async def test_add_node_too_large_to_gossip_keeps_nothing() -> None:
    def refuse(channel: str, payload: bytes) -> None:
        raise InvalidArgument.for_field("payload", "too large for one datagram")

    service = RingService(RingDirectory("a"), _NoMembers(), refuse, lambda: 0.0)  # type: ignore[arg-type]
    request = ring_pb2.AddNodeRequest(ring="r", address="10.0.0.1", port=80)
    with pytest.raises(InvalidArgument, match="payload"):
        await service.AddNode(request, None)  # type: ignore[arg-type]
    listed = await service.ListNodes(ring_pb2.ListNodesRequest(ring="r"), None)  # type: ignore[arg-type]
    assert list(listed.nodes) == []
