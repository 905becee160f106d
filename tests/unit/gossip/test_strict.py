"""Strict mode (GossipConfig.strict): a bug inside the core raises; off, it is counted."""

from __future__ import annotations

import random

import pytest

from controlplane.gossip import GossipConfig, GossipNode, StartPushPull, codec
from controlplane.gossip.config import STRICT_ENVIRONMENT
from controlplane.testing.crowd import CrowdConfig
from controlplane.testing.membership_sim import MembershipSimCluster
from controlplane.testing.sim import SimCluster

A = ("10.0.0.1", 7946)
B = ("10.0.0.2", 7946)


def node(name: str, address: tuple[str, int], strict: bool) -> GossipNode:
    return GossipNode(GossipConfig.lan(strict=strict), name, address, rng=random.Random(1), now=0.0)


def ping_packet() -> bytes:
    body = codec.packet_body([codec.encode_ping(1, "a", "b")])
    return codec.seal(codec.frame_header("", False), body, None)


def broken(*_args: object) -> None:
    raise ZeroDivisionError("a bug")


def join_request() -> bytes:
    (start,) = node("b", B, False).join([A], 0.0)
    assert isinstance(start, StartPushPull)
    return start.request


def test_a_bug_in_a_message_handler_raises_when_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GossipNode, "_dispatch", broken)
    a = node("a", A, strict=True)
    with pytest.raises(ZeroDivisionError):
        a.receive_packet(B, ping_packet(), 0.0)


def test_a_bug_in_a_message_handler_is_counted_when_not_strict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(GossipNode, "_dispatch", broken)
    a = node("a", A, strict=False)
    assert a.receive_packet(B, ping_packet(), 0.0) == []
    assert a.stats.dropped["internal_error"] == 1


def test_a_bug_in_the_record_merge_raises_when_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    request = join_request()
    monkeypatch.setattr(GossipNode, "_merge_record", broken)
    a = node("a", A, strict=True)
    with pytest.raises(ZeroDivisionError):
        a.handle_push_pull(B, request, 0.0)


def test_a_bug_in_the_record_merge_is_counted_when_not_strict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = join_request()
    monkeypatch.setattr(GossipNode, "_merge_record", broken)
    a = node("a", A, strict=False)
    a.handle_push_pull(B, request, 0.0)
    assert a.stats.dropped["internal_error"] == 1  # the one record of b


def test_hostile_input_is_dropped_even_when_strict() -> None:
    a = node("a", A, strict=True)
    garbage = codec.frame_header("", False) + b"\xff" * 8
    assert a.receive_packet(B, garbage, 0.0) == []
    assert a.stats.dropped["decode"] == 1
    assert a.stats.dropped["internal_error"] == 0


@pytest.mark.parametrize(
    ("value", "strict"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("no", False)],
)
def test_the_default_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, strict: bool
) -> None:
    monkeypatch.setenv(STRICT_ENVIRONMENT, value)
    assert GossipConfig().strict is strict
    assert GossipConfig.lan().strict is strict
    assert GossipConfig.local().strict is strict


def test_unset_means_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STRICT_ENVIRONMENT, raising=False)
    assert GossipConfig.wan().strict is False


def test_the_test_suite_runs_strict() -> None:
    assert GossipConfig().strict  # tests/conftest.py


def test_simulators_are_strict_whatever_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STRICT_ENVIRONMENT, raising=False)
    assert SimCluster().config.strict
    assert SimCluster(GossipConfig.lan(strict=False)).config.strict
    assert MembershipSimCluster().config.strict
    assert CrowdConfig(size=3).gossip.strict
