"""Direct datagrams: one subsystem message for one member, over the gossip port.

Gossip broadcasts reach every member, and every member passes them on; a message
that only one member needs (an election grant, a renewal for one voter) should
cost one datagram. A direct datagram uses the gossip frame with flag bit 1 set
(``protos/controlplane/gossip/v1/election.proto``, file comment): the same label
and the same keyring, so it is as private and as authenticated as gossip, and an
agent that does not know the flag drops it as a frame with unknown flags. Its
body is a ``DirectMessage`` (channel, payload). The receiver never forwards it.

Pure functions: the runtime routes datagrams with the flag to a handler
(``GossipRuntime.on_direct``) before the gossip core sees them.
"""

from __future__ import annotations

from controlplane.gossip import codec
from controlplane.gossip.keyring import DecryptionFailed, Keyring
from controlplane.wire.v1 import election_pb2

FRAME_VERSION = 1
FLAG_ENCRYPTED = 0x01
FLAG_DIRECT = 0x02
MAX_LABEL_SIZE = 255


class DirectFrameError(ValueError):
    """A datagram that is not a valid direct frame for this member's label and keys."""


def is_direct(data: bytes) -> bool:
    """True for a datagram that claims to be a direct frame (checked fully by ``open_direct``)."""
    return len(data) >= 3 and data[0] == FRAME_VERSION and bool(data[1] & FLAG_DIRECT)


def seal_direct(channel: str, payload: bytes, label: str, keyring: Keyring | None) -> bytes:
    """A direct datagram carrying ``payload`` on ``channel``, encrypted when keyed."""
    raw_label = label.encode()
    if len(raw_label) > MAX_LABEL_SIZE:
        raise ValueError(f"label is {len(raw_label)} bytes, at most {MAX_LABEL_SIZE}")
    flags = FLAG_DIRECT | (FLAG_ENCRYPTED if keyring is not None else 0)
    header = bytes((FRAME_VERSION, flags, len(raw_label))) + raw_label
    body = election_pb2.DirectMessage(channel=channel, payload=payload).SerializeToString()
    if keyring is None:
        return header + body
    # The header, flags included, is the associated data: a direct frame cannot be
    # passed off as a packet, nor moved to another cluster label.
    return header + keyring.encrypt(body, header)


def open_direct(data: bytes, label: str, keyring: Keyring | None) -> tuple[str, bytes]:
    """``(channel, payload)`` of a direct datagram; raises ``DirectFrameError``."""
    if not is_direct(data):
        raise DirectFrameError("not a direct frame")
    flags = data[1]
    if flags & ~(FLAG_DIRECT | FLAG_ENCRYPTED):
        raise DirectFrameError("unknown frame flags")
    body_start = 3 + data[2]
    if len(data) < body_start or data[3:body_start] != label.encode():
        raise DirectFrameError("wrong cluster label")
    if flags & FLAG_ENCRYPTED:
        if keyring is None:
            raise DirectFrameError("encrypted, but this member has no keyring")
        try:
            body = keyring.decrypt(data[body_start:], data[:body_start])
        except DecryptionFailed:
            raise DirectFrameError("cannot decrypt with any key") from None
    elif keyring is not None:
        raise DirectFrameError("not encrypted, but gossip is")
    else:
        body = data[body_start:]
    message = codec.parse(election_pb2.DirectMessage, body)
    if message is None:
        raise DirectFrameError("undecodable body")
    return message.channel, message.payload
