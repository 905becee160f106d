"""The election's wire messages (``protos/controlplane/gossip/v1/election.proto``).

Five messages, each a dataclass with ``to_bytes`` and one ``decode`` for all:

* ``LeaseMessage``: a holder (or candidate) about leadership ``epoch``;
  ``established`` says it already leads, ``request`` asks the receiver to grant
  request ``seq``, ``remaining`` is how long its lease still runs, measured on its
  clock when it sent the message, ``echo`` returns the receiver's latest stamp
  so the receiver can place the send time on its own clock, and ``lease_time`` is
  the sender's setting (0: not sent, the default).
* ``VoteMessage``: a voter's answer to one request, with the highest epoch it has
  seen, on refusal how long until it could grant, its process run (``life``) and
  its clock reading (``stamp``).
* ``ReleaseMessage``: a holder whose leadership ended frees its voters.
* ``InquiryMessage``: who leads? (with the asker's stamp).
* ``ViewMessage``: the answer: the leadership the responder knows of, and the
  highest epoch it has seen.

Everything from the wire is checked here: names follow the members' naming rule
(``controlplane.gossip.names``: 1 to 128 characters of ``[A-Za-z0-9._-]``), durations
finite and within ``[0, MAX_DURATION]``, stamps finite; anything else raises
``MessageError`` (a ``ValueError``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controlplane.gossip import codec
from controlplane.gossip.names import valid_name
from controlplane.wire.v1 import election_pb2 as pb

MAX_NAME_BYTES = 255
# Epochs, sequences and lives are uint64 on the wire.
MAX_COUNTER = 2**64 - 1
# Seconds; far above any sane lease, low enough that garbage cannot stall a member.
MAX_DURATION = 3600.0
# The largest message: a vote or a view with two maximal names, with room to spare.
MAX_MESSAGE_BYTES = 1024


class MessageError(ValueError):
    """Bytes that are not a valid election message."""


@dataclass(frozen=True, slots=True)
class Echo:
    """The receiver's own ``stamp`` returned to it, ``held`` seconds (sender's clock) later."""

    stamp: float
    held: float

    def _proto(self) -> pb.Echo:
        return pb.Echo(stamp=_stamp(self.stamp), held=_duration(self.held))


@dataclass(frozen=True, slots=True)
class LeaseMessage:
    holder: str
    epoch: int
    seq: int
    established: bool
    request: bool
    remaining: float
    echo: Echo | None = None
    # The sender's lease_time setting; 0 when the sender did not say (the default).
    lease_time: float = 0.0

    def to_bytes(self) -> bytes:
        lease = pb.Lease(
            holder=_name(self.holder),
            epoch=_counter(self.epoch),
            seq=_counter(self.seq),
            established=self.established,
            request=self.request,
            lease_remaining=_duration(self.remaining),
            lease_time=_duration(self.lease_time),
        )
        if self.echo is not None:
            lease.echo.CopyFrom(self.echo._proto())
        return pb.ElectionMessage(lease=lease).SerializeToString()


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
    life: int = 0
    stamp: float = 0.0
    # On refusal: the voter backs another leadership for ``retry_after``.
    committed: bool = False

    def to_bytes(self) -> bytes:
        vote = pb.Vote(
            voter=_name(self.voter),
            candidate=_name(self.candidate),
            epoch=_counter(self.epoch),
            seq=_counter(self.seq),
            granted=self.granted,
            max_epoch=_counter(self.max_epoch),
            retry_after=_duration(self.retry_after),
            life=_counter(self.life),
            stamp=_stamp(self.stamp),
            committed=self.committed,
        )
        return pb.ElectionMessage(vote=vote).SerializeToString()


@dataclass(frozen=True, slots=True)
class ReleaseMessage:
    holder: str
    epoch: int

    def to_bytes(self) -> bytes:
        release = pb.Release(holder=_name(self.holder), epoch=_counter(self.epoch))
        return pb.ElectionMessage(release=release).SerializeToString()


@dataclass(frozen=True, slots=True)
class InquiryMessage:
    asker: str
    life: int
    stamp: float

    def to_bytes(self) -> bytes:
        inquiry = pb.Inquiry(
            asker=_name(self.asker), life=_counter(self.life), stamp=_stamp(self.stamp)
        )
        return pb.ElectionMessage(inquiry=inquiry).SerializeToString()


@dataclass(frozen=True, slots=True)
class ViewMessage:
    responder: str
    # None: the responder knows of no leadership.
    holder: str | None
    epoch: int
    view_remaining: float
    block_remaining: float
    echo: Echo
    max_epoch: int = 0

    def to_bytes(self) -> bytes:
        view = pb.View(
            responder=_name(self.responder),
            holder="" if self.holder is None else _name(self.holder),
            epoch=_counter(self.epoch),
            lease_remaining=_duration(self.view_remaining),
            block_remaining=_duration(self.block_remaining),
            max_epoch=_counter(self.max_epoch),
        )
        view.echo.CopyFrom(self.echo._proto())
        return pb.ElectionMessage(view=view).SerializeToString()


Message = LeaseMessage | VoteMessage | ReleaseMessage | InquiryMessage | ViewMessage


def decode(data: bytes) -> Message:
    """Parse one message; raise ``MessageError`` on anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MessageError(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    message = codec.parse(pb.ElectionMessage, bytes(data))
    if message is None:
        raise MessageError("not an election message")
    kind = message.WhichOneof("body")
    if kind == "lease":
        lease = message.lease
        return LeaseMessage(
            _name(lease.holder),
            lease.epoch,
            lease.seq,
            lease.established,
            lease.request,
            _duration(lease.lease_remaining),
            _echo(lease.echo) if lease.HasField("echo") else None,
            _duration(lease.lease_time),
        )
    if kind == "vote":
        vote = message.vote
        return VoteMessage(
            _name(vote.voter),
            _name(vote.candidate),
            vote.epoch,
            vote.seq,
            vote.granted,
            vote.max_epoch,
            _duration(vote.retry_after),
            vote.life,
            _stamp(vote.stamp),
            vote.committed,
        )
    if kind == "release":
        release = message.release
        return ReleaseMessage(_name(release.holder), release.epoch)
    if kind == "inquiry":
        inquiry = message.inquiry
        return InquiryMessage(_name(inquiry.asker), inquiry.life, _stamp(inquiry.stamp))
    if kind == "view":
        view = message.view
        if not view.HasField("echo"):
            raise MessageError("a view must echo the inquiry's stamp")
        return ViewMessage(
            _name(view.responder),
            _name(view.holder) if view.holder else None,
            view.epoch,
            _duration(view.lease_remaining),
            _duration(view.block_remaining),
            _echo(view.echo),
            view.max_epoch,
        )
    raise MessageError("an election message must have a body")


def _counter(value: int) -> int:
    if not 0 <= value <= MAX_COUNTER:
        raise MessageError(f"counter {value!r} out of uint64 range")
    return value


def _duration(value: float) -> float:
    # Durations are bounded so a forged message cannot block anyone for long.
    if not (math.isfinite(value) and 0.0 <= value <= MAX_DURATION):
        raise MessageError(f"duration {value!r} outside [0, {MAX_DURATION}]")
    return float(value)


def _stamp(value: float) -> float:
    # A stamp is only ever compared for equality with one we sent; it must be a number.
    if not math.isfinite(value):
        raise MessageError(f"stamp {value!r} is not finite")
    return float(value)


def _echo(echo: pb.Echo) -> Echo:
    return Echo(_stamp(echo.stamp), _duration(echo.held))


def _name(name: str) -> str:
    # Names reach the log and the leader view that every API client reads: a name
    # no member may have is refused with the whole message.
    if not valid_name(name):
        raise MessageError(f"member name {name[:40]!r} is not 1 to 128 of [A-Za-z0-9._-]")
    return name
