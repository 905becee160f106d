"""Exceptions raised by the hash ring.

This module owns the ring's error types so callers (and the API edge, which maps
them to status codes) can catch them without importing the ring itself.
"""

from __future__ import annotations

__all__ = ["EmptyRingError"]


class EmptyRingError(LookupError):
    """A lookup was made on a ring that has no members, so no node can own the key."""

    def __init__(self, message: str = "the hash ring has no nodes") -> None:
        super().__init__(message)
