"""The election's wire messages and their small, bounded binary codec.

Three messages travel through the gossip layer's user broadcasts:

* ``LeaseMessage``: a holder (or candidate) announces leadership ``epoch``;
  ``established`` says it already leads, ``request`` asks the voters to grant
  request ``seq``, and ``remaining`` is the longest it may go on believing it
  leads, counted on its clock from sending (``lease_time`` for a request, what
  is left of the lease for an announcement that no longer renews).
* ``VoteMessage``: a voter's answer to one request, with the highest epoch it
  has seen and, on refusal, how long until it could grant.
* ``ReleaseMessage``: a holder that stepped down frees the grants it held.

Layout: version byte, kind byte, fixed big-endian fields, then names as a length
byte plus UTF-8. Anything malformed raises ``MessageError`` (a ``ValueError``).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

VERSION = 1
MAX_NAME_BYTES = 255
# Epochs and sequence numbers are uint64 on the wire.
MAX_COUNTER = 2**64 - 1
# Seconds; far above any sane lease, low enough that garbage cannot stall a member.
MAX_DURATION = 3600.0

_KIND_LEASE = 1
_KIND_VOTE = 2
_KIND_RELEASE = 3

_HEADER = struct.Struct(">BB")
_LEASE = struct.Struct(">BQQd")  # flags, epoch, seq, remaining
_VOTE = struct.Struct(">BQQQd")  # flags, epoch, seq, max_epoch, retry_after
_RELEASE = struct.Struct(">Q")  # epoch
_FLAG_SET = 1
_FLAG_ESTABLISHED = 1
_FLAG_REQUEST = 2

# The largest message: a vote with two maximal names.
MAX_MESSAGE_BYTES = _HEADER.size + _VOTE.size + 2 * (1 + MAX_NAME_BYTES)


class MessageError(ValueError):
    """Bytes that are not a valid election message of this version."""


@dataclass(frozen=True, slots=True)
class LeaseMessage:
    holder: str
    epoch: int
    seq: int
    established: bool
    request: bool
    remaining: float

    def to_bytes(self) -> bytes:
        flags = (_FLAG_ESTABLISHED if self.established else 0) | (
            _FLAG_REQUEST if self.request else 0
        )
        return (
            _HEADER.pack(VERSION, _KIND_LEASE)
            + _LEASE.pack(
                flags, _counter(self.epoch), _counter(self.seq), _duration(self.remaining)
            )
            + _name(self.holder)
        )


@dataclass(frozen=True, slots=True)
class VoteMessage:
    voter: str
    candidate: str
    epoch: int
    seq: int
    granted: bool
    max_epoch: int
    # Seconds (voter's clock) until the voter could grant; 0 when granted.
    retry_after: float

    def to_bytes(self) -> bytes:
        flags = _FLAG_SET if self.granted else 0
        retry = _duration(self.retry_after)
        return (
            _HEADER.pack(VERSION, _KIND_VOTE)
            + _VOTE.pack(
                flags, _counter(self.epoch), _counter(self.seq), _counter(self.max_epoch), retry
            )
            + _name(self.voter)
            + _name(self.candidate)
        )


@dataclass(frozen=True, slots=True)
class ReleaseMessage:
    holder: str
    epoch: int

    def to_bytes(self) -> bytes:
        return (
            _HEADER.pack(VERSION, _KIND_RELEASE)
            + _RELEASE.pack(_counter(self.epoch))
            + _name(self.holder)
        )


Message = LeaseMessage | VoteMessage | ReleaseMessage


def decode(data: bytes) -> Message:
    """Parse one message; raise ``MessageError`` on anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MessageError(f"expected bytes, got {type(data).__name__}")
    buf = bytes(data)
    if len(buf) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(buf)} bytes exceeds {MAX_MESSAGE_BYTES}")
    if len(buf) < _HEADER.size:
        raise MessageError("message shorter than its header")
    version, kind = _HEADER.unpack_from(buf, 0)
    if version != VERSION:
        raise MessageError(f"unsupported election message version {version}")
    offset = _HEADER.size
    message: Message
    if kind == _KIND_LEASE:
        flags, epoch, seq, remaining = _unpack(_LEASE, buf, offset)
        offset += _LEASE.size
        if flags & ~(_FLAG_ESTABLISHED | _FLAG_REQUEST):
            raise MessageError(f"unknown flags {flags!r}")
        if flags == 0:
            raise MessageError("a lease message must be established or a request")
        holder, offset = _read_name(buf, offset)
        message = LeaseMessage(
            holder,
            int(epoch),
            int(seq),
            bool(flags & _FLAG_ESTABLISHED),
            bool(flags & _FLAG_REQUEST),
            _duration(remaining),
        )
    elif kind == _KIND_VOTE:
        flags, epoch, seq, max_epoch, retry = _unpack(_VOTE, buf, offset)
        offset += _VOTE.size
        retry = _duration(retry)
        voter, offset = _read_name(buf, offset)
        candidate, offset = _read_name(buf, offset)
        message = VoteMessage(
            voter, candidate, int(epoch), int(seq), _flag(flags), int(max_epoch), float(retry)
        )
    elif kind == _KIND_RELEASE:
        (epoch,) = _unpack(_RELEASE, buf, offset)
        offset += _RELEASE.size
        holder, offset = _read_name(buf, offset)
        message = ReleaseMessage(holder, int(epoch))
    else:
        raise MessageError(f"unknown election message kind {kind}")
    if offset != len(buf):
        raise MessageError(f"{len(buf) - offset} trailing bytes")
    return message


def _counter(value: int) -> int:
    if not 0 <= value <= MAX_COUNTER:
        raise MessageError(f"counter {value!r} out of uint64 range")
    return value


def _duration(value: float) -> float:
    # Durations are bounded so a forged message cannot block anyone for long.
    if not (math.isfinite(value) and 0.0 <= value <= MAX_DURATION):
        raise MessageError(f"duration {value!r} outside [0, {MAX_DURATION}]")
    return float(value)


def _name(name: str) -> bytes:
    raw = name.encode("utf-8")
    if not 0 < len(raw) <= MAX_NAME_BYTES:
        raise MessageError(f"member name must be 1..{MAX_NAME_BYTES} bytes, got {len(raw)}")
    return bytes((len(raw),)) + raw


def _unpack(layout: struct.Struct, buf: bytes, offset: int) -> tuple[Any, ...]:
    if len(buf) - offset < layout.size:
        raise MessageError("message truncated")
    return layout.unpack_from(buf, offset)


def _flag(flags: int) -> bool:
    if flags not in (0, _FLAG_SET):
        raise MessageError(f"unknown flags {flags!r}")
    return flags == _FLAG_SET


def _read_name(buf: bytes, offset: int) -> tuple[str, int]:
    if offset >= len(buf):
        raise MessageError("message truncated before a name")
    length = buf[offset]
    end = offset + 1 + length
    if length == 0 or end > len(buf):
        raise MessageError("bad name length")
    try:
        name = buf[offset + 1 : end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError("name is not UTF-8") from exc
    return name, end
