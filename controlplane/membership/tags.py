"""Member tags: the deterministic encoding carried as gossip node metadata.

Tags are a ``MemberTags`` protobuf (``membership.proto``) with the entries
sorted by key, so equal tags always give equal bytes (and no spurious
member-update). The encoded size is what counts against the gossip core's
``max_meta_size`` (512 bytes, memberlist MetaMaxSize).
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.errors import InvalidArgument
from controlplane.gossip import codec
from controlplane.wire.v1 import membership_pb2 as pb


def encode_tags(tags: Mapping[str, str]) -> bytes:
    """Deterministic encoding: entries sorted by key; no tags encode to zero bytes."""
    message = pb.MemberTags()
    for key in sorted(tags):
        message.tags.add(key=key, value=tags[key])
    return message.SerializeToString()


def decode_tags(meta: bytes) -> dict[str, str]:
    """Tags from gossip metadata; metadata that is not valid tags gives no tags (never raises)."""
    if not meta:
        return {}
    message = codec.parse(pb.MemberTags, meta)
    if message is None:  # a peer with foreign metadata
        return {}
    return {tag.key: tag.value for tag in message.tags if tag.key}


def check_tags(tags: Mapping[str, str], max_size: int) -> bytes:
    """Validate and encode; raises InvalidArgument naming ``tags`` when a rule is broken."""
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument.for_field("tags", "tag keys must be non-empty strings")
        if not isinstance(value, str):
            raise InvalidArgument.for_field("tags", f"the value of tag {key!r} must be a string")
    encoded = encode_tags(tags)
    if len(encoded) > max_size:
        raise InvalidArgument.for_field(
            "tags", f"encoded tags are {len(encoded)} bytes, the limit is {max_size} bytes"
        )
    return encoded
