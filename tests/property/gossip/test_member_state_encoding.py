"""Property test: the hand-built push-pull record is what protobuf itself writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.gossip import codec
from controlplane.wire.v1 import gossip_pb2 as pb


@settings(derandomize=True, max_examples=500, deadline=None)
@given(
    name=st.text(max_size=80),
    host=st.text(max_size=60),
    port=st.integers(min_value=0, max_value=65535),
    meta=st.binary(max_size=600),
    incarnation=st.integers(min_value=0, max_value=2**32 - 1),
    status=st.integers(min_value=0, max_value=4),
)
def test_encode_member_state_matches_protobuf(
    name: str, host: str, port: int, meta: bytes, incarnation: int, status: int
) -> None:
    expected = pb.MemberState(
        name=name,
        address=pb.Address(host=host, port=port),
        meta=meta,
        incarnation=incarnation,
        status=pb.MemberStatus.ValueType(status),
    ).SerializeToString()
    assert codec.encode_member_state(name, (host, port), meta, incarnation, status) == expected
