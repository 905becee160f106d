"""The election shell's reading of members: ranks come only from ASCII digits."""

from __future__ import annotations

from types import MappingProxyType

from controlplane.membership import MemberInfo, MemberStatus
from controlplane.shell.election import member_rank


def member(**tags: str) -> MemberInfo:
    return MemberInfo(
        "m",
        ("10.0.0.1", 7946),
        MappingProxyType({"role": "server", **tags}),
        MemberStatus.ALIVE,
        1,
    )


def test_digits_of_other_scripts_are_not_ranks() -> None:
    assert member_rank(member(rank="²")) is None
    assert member_rank(member(rank="٣")) is None
    assert member_rank(member(rank="3")) == 3
