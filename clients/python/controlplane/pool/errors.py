"""Exceptions raised by the server pool for bad input.

Every exception is a :class:`ValueError` subclass whose message starts with the
name of the offending field and states the limit it broke, so callers (and the
API edge, which maps them to INVALID_ARGUMENT) can report precisely what was
wrong.
"""

from __future__ import annotations

__all__ = [
    "InvalidAddressError",
    "InvalidApiVersionError",
    "InvalidConfigError",
    "InvalidCountError",
    "InvalidServerError",
    "InvalidTimeError",
    "PoolInputError",
]


class PoolInputError(ValueError):
    """Bad input to the server pool.

    Attributes:
        field: the name of the argument or attribute that was rejected.
        problem: what was wrong with it, including the accepted range.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InvalidAddressError(PoolInputError):
    """An address is not ``host:port`` with a port in 1..65535."""


class InvalidServerError(PoolInputError):
    """A server record is malformed (for example an empty name)."""


class InvalidApiVersionError(PoolInputError):
    """An API version has a negative or non-integer component."""


class InvalidCountError(PoolInputError):
    """A count (number of nodes, servers, ...) is negative or not an integer."""


class InvalidTimeError(PoolInputError):
    """A time or duration is not a finite number, or is out of range."""


class InvalidConfigError(PoolInputError):
    """A pool or ejection setting is outside its accepted range."""
