"""Exceptions raised by the gossip core for caller errors (never for bad network input)."""

from __future__ import annotations


class GossipError(Exception):
    """Base class of gossip core errors."""


class MetadataTooLarge(GossipError, ValueError):
    """Node metadata exceeds ``GossipConfig.max_meta_size``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"node metadata is {size} bytes, the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class PayloadTooLarge(GossipError, ValueError):
    """A user broadcast does not fit in one datagram."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"user broadcast is {size} bytes, at most {limit} bytes fit in a packet")
        self.size = size
        self.limit = limit


class PushPullRejected(GossipError, ValueError):
    """A push-pull request was refused (bad frame, label, key or version); ``reason`` says why.

    The API edge maps it to INVALID_ARGUMENT (or PERMISSION_DENIED for key and label).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"push-pull request rejected: {reason}")
        self.reason = reason


class StreamPingRefused(GossipError, ValueError):
    """A ping over the gRPC port (``Gossip/Ping``) was refused: a frame this member cannot
    open, not exactly one ping, or a ping for another member; ``reason`` says which, in
    the words of ``GossipStats.dropped``. The edge maps it to PERMISSION_DENIED."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"stream ping refused: {reason}")
        self.reason = reason
