"""Input limits of the membership API, raised as the project's ``InvalidArgument``.

Every message names the field and the limit, so the API edge can return a
field violation without re-phrasing it.
"""

from __future__ import annotations

from controlplane.errors import InvalidArgument
from controlplane.gossip.names import MAX_NAME_LENGTH, valid_name

# Node names: 1 to 128 characters of letters, digits, '-', '_' and '.' (the characters
# Serf's ValidateNodeNames accepts, at the length it allows): the one rule of names.py.
MAX_NODE_NAME_LENGTH = MAX_NAME_LENGTH
valid_node_name = valid_name
# User event names: 1 to 128 bytes of UTF-8.
MAX_EVENT_NAME_SIZE = 128


def check_node_name(name: str, field: str = "name") -> None:
    if not valid_node_name(name):
        raise InvalidArgument.for_field(
            field,
            f"must be 1 to {MAX_NODE_NAME_LENGTH} characters of letters, digits, "
            f"'-', '_' and '.', got {name!r:.160}",
        )


def check_user_event(name: str, payload: bytes, limit: int) -> None:
    """serf.go UserEvent: len(name) + len(payload) must not exceed the configured limit."""
    name_size = len(name.encode())
    if not 1 <= name_size <= MAX_EVENT_NAME_SIZE:
        raise InvalidArgument.for_field(
            "name", f"must be 1 to {MAX_EVENT_NAME_SIZE} bytes, got {name_size}"
        )
    total = name_size + len(payload)
    if total > limit:
        raise InvalidArgument.for_field(
            "payload",
            f"name and payload are {total} bytes, the limit (user_event_size_limit) "
            f"is {limit} bytes",
        )
