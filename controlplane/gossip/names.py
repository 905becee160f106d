"""The naming rule of members, pools and rings: 1 to 128 characters of
[A-Za-z0-9._-] (Serf's ValidateNodeNames), and for pools and rings the empty name
meaning "default" (docs/api.md).

Pure: the gossip and election cores check every name they learn from the network
with `valid_name`.
"""

from __future__ import annotations

import re

from controlplane.errors import InvalidArgument

MAX_NAME_LENGTH = 128
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
DEFAULT = "default"


def valid_name(name: str) -> bool:
    """The rule, as a check: every name that reaches a log line, a snapshot record or
    a member list passes it, so none can carry a separator, a newline or a control
    character. O(length), at most 128."""
    return NAME_RE.fullmatch(name) is not None


def name_or_default(raw: str, field: str) -> str:
    """`raw`, or "default" when empty; INVALID_ARGUMENT naming `field` otherwise."""
    if not raw:
        return DEFAULT
    if not NAME_RE.fullmatch(raw):
        raise InvalidArgument.for_field(
            field, f"must be 1 to 128 characters of [A-Za-z0-9._-], got {raw!r}"
        )
    return raw
