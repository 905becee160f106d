"""Every input limit at its boundary: accepted at the limit, InvalidArgument one over."""

from __future__ import annotations

import pytest

from controlplane.errors import FailedPrecondition, InvalidArgument, NotFound
from controlplane.membership import (
    USER_EVENT_SIZE_HARD_LIMIT,
    InvalidConfig,
    MembershipConfig,
    encode_tags,
)
from tests.unit.membership.helpers import alive, dead, make, receive


def assert_names_field(error: InvalidArgument, field: str) -> None:
    assert error.violations[0].field == field
    assert str(error).startswith(f"{field}: ")


def test_node_name_of_128_characters_is_accepted_129_refused():
    make("a" * 128)
    with pytest.raises(InvalidArgument) as caught:
        make("a" * 129)
    assert_names_field(caught.value, "name")
    assert "128" in str(caught.value)


@pytest.mark.parametrize("name", ["", "has space", "slash/no", "ünicode", "colon:no"])
def test_node_name_characters(name: str):
    with pytest.raises(InvalidArgument):
        make(name)


def test_node_name_allows_letters_digits_dash_underscore_dot():
    make("Node-1_a.b")


def tags_of_size(size: int) -> dict[str, str]:
    for length in range(size):
        tags = {"k": "v" * length}
        if len(encode_tags(tags)) == size:
            return tags
    raise AssertionError(f"no single tag encodes to {size} bytes")


def test_tags_at_512_encoded_bytes_accepted_513_refused():
    layer = make()
    layer.update_tags(tags_of_size(512), (), now=1.0)
    assert len(encode_tags(layer.local_member().tags)) == 512
    with pytest.raises(InvalidArgument) as caught:
        layer.update_tags(tags_of_size(513), (), now=2.0)
    assert_names_field(caught.value, "tags")
    assert "512" in str(caught.value)
    # A refused update changes nothing.
    assert len(encode_tags(layer.local_member().tags)) == 512


def test_tags_encoding_is_deterministic():
    assert encode_tags({"b": "2", "a": "1"}) == encode_tags({"a": "1", "b": "2"})
    assert encode_tags({}) == b""


def test_event_name_of_128_bytes_accepted_129_refused():
    layer = make(config=MembershipConfig(user_event_size_limit=1024))
    layer.fire_user_event("e" * 128, b"", False, now=1.0)
    with pytest.raises(InvalidArgument) as caught:
        layer.fire_user_event("e" * 129, b"", False, now=1.0)
    assert_names_field(caught.value, "name")
    with pytest.raises(InvalidArgument):
        layer.fire_user_event("", b"", False, now=1.0)


def test_name_plus_payload_at_the_limit_accepted_one_byte_over_refused():
    layer = make()
    ltime, _effects = layer.fire_user_event("deploy", b"x" * (512 - 6), False, now=1.0)
    assert ltime == 1
    assert layer.event_time == 2
    with pytest.raises(InvalidArgument) as caught:
        layer.fire_user_event("deploy", b"x" * (512 - 5), False, now=1.0)
    assert_names_field(caught.value, "payload")
    assert "512" in str(caught.value)
    assert layer.event_time == 2  # a refused event does not use a Lamport time


def test_size_limit_config_hard_cap():
    assert MembershipConfig(user_event_size_limit=USER_EVENT_SIZE_HARD_LIMIT)
    with pytest.raises(InvalidConfig) as caught:
        MembershipConfig(user_event_size_limit=USER_EVENT_SIZE_HARD_LIMIT + 1)
    assert isinstance(caught.value, InvalidArgument)
    assert isinstance(caught.value, ValueError)
    assert_names_field(caught.value, "user_event_size_limit")
    assert "9216" in str(caught.value)


def test_event_larger_than_a_datagram_is_refused_as_invalid_argument():
    layer = make(config=MembershipConfig(user_event_size_limit=USER_EVENT_SIZE_HARD_LIMIT))
    with pytest.raises(InvalidArgument) as caught:
        layer.fire_user_event("big", b"x" * 4000, False, now=1.0)
    assert_names_field(caught.value, "payload")


def test_force_leave_unknown_is_not_found_alive_is_failed_precondition():
    layer = make()
    with pytest.raises(NotFound):
        layer.force_leave("nobody", False, now=1.0)
    with pytest.raises(FailedPrecondition):
        layer.force_leave("a", False, now=1.0)  # ourselves
    receive(layer, alive("b"))
    with pytest.raises(FailedPrecondition):
        layer.force_leave("b", False, now=1.0)
    receive(layer, dead("b", 1, "a"), now=2.0)  # declared dead by a peer: failed
    layer.force_leave("b", False, now=3.0)
    assert layer.member("b").status.name == "LEFT"
