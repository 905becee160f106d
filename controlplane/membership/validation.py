"""Input limits of the membership API, raised as the project's ``InvalidArgument``.

Every message names the field and the limit, so the API edge can return a
field violation without re-phrasing it.
"""

from __future__ import annotations

import functools
from typing import Any

from controlplane.errors import InvalidArgument
from controlplane.gossip.names import MAX_NAME_LENGTH, valid_name

# Node names: 1 to 128 characters of letters, digits, '-', '_' and '.' (the characters
# Serf's ValidateNodeNames accepts, at the length it allows): the one rule of names.py.
MAX_NODE_NAME_LENGTH = MAX_NAME_LENGTH
valid_node_name = valid_name
# User event names: 1 to 128 bytes of UTF-8.
MAX_EVENT_NAME_SIZE = 128


def valid_query_name(name: str) -> bool:
    """A query name: 1 to 128 bytes of UTF-8 without control characters. It reaches
    handler processes' environment (where a NUL cannot go) and the log."""
    return 1 <= len(name.encode()) <= MAX_EVENT_NAME_SIZE and name.isprintable()


def check_query_name(name: str, field: str = "name") -> None:
    if not valid_query_name(name):
        raise InvalidArgument.for_field(
            field,
            f"must be 1 to {MAX_EVENT_NAME_SIZE} bytes without control characters, "
            f"got {name!r:.160}",
        )


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


# Memory RE2 may use for one compiled filter expression (see _re2).
MAX_PATTERN_MEMORY = 64 << 10


@functools.cache
def _re2() -> tuple[Any, Any]:
    """google-re2 and its UTF-8 options, imported by the first filter: an agent that is
    never asked to filter does not load the library."""
    import re2

    options = re2.Options()
    options.encoding = re2.Options.Encoding.UTF8
    # A bad pattern is the client's error, answered as INVALID_ARGUMENT: RE2 must not also
    # print it to the agent's stderr.
    options.log_errors = False
    # Matching is linear, compiling is not: a short counted repetition of a large class
    # (\pL{300}) takes RE2 100-200 ms and its default 8 MiB to compile. Filters come
    # from clients and, for queries, from the wire; 64 KiB fits every filter a tag
    # needs (^[a-z0-9.-]{1,128}$ takes a few KiB) and refuses the rest in under 1 ms.
    options.max_mem = MAX_PATTERN_MEMORY
    return re2, options


def compile_pattern(field: str, pattern: str, limit: int) -> Any:
    """An RE2 expression (linear-time matching, Go's regexp syntax as Serf uses), at most
    ``limit`` characters; InvalidArgument naming ``field`` otherwise. Match it against
    UTF-8 bytes."""
    if len(pattern) > limit:
        raise InvalidArgument.for_field(
            field, f"must be at most {limit} characters, got {len(pattern)}"
        )
    re2, utf8 = _re2()
    try:
        # Compiled and matched as UTF-8 bytes, which has the same meaning for UTF-8
        # text (the encoding is explicit) and costs the wrapper of google-re2 less
        # than half of what str matching does, a difference thousands of members show.
        return re2.compile(pattern.encode(), utf8)
    except re2.error as error:
        # google-re2 reports its message as bytes: b'missing ]: ['.
        reason = error.args[0] if error.args else ""
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        if reason.startswith("pattern too large"):
            raise InvalidArgument.for_field(
                field,
                f"compiles to more than {MAX_PATTERN_MEMORY // 1024} KiB (RE2: {reason});"
                " use a simpler expression",
            ) from None
        raise InvalidArgument.for_field(
            field, f"is not a valid RE2 regular expression: {reason}"
        ) from None
