"""The heartbeat service's reading of members: API versions only from ASCII digits."""

from __future__ import annotations

from types import MappingProxyType

from controlplane.api.heartbeat import member_api_version
from controlplane.membership import MemberInfo, MemberStatus


def member(**tags: str) -> MemberInfo:
    return MemberInfo(
        "m",
        ("10.0.0.1", 7946),
        MappingProxyType({"role": "server", **tags}),
        MemberStatus.ALIVE,
        1,
    )


def test_digits_of_other_scripts_are_not_versions() -> None:
    assert member_api_version(member(api_version="².0")) is None
    assert member_api_version(member(api_version="1.0")) is not None
