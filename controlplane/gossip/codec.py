"""Wire encoding: the frame around every datagram and push-pull payload, and the messages.

Frame (all integers unsigned, big-endian where wider than a byte)::

    version:u8 = 1 | flags:u8 | label_len:u8 | label | body

``flags`` bit 0 means the body is ``nonce(12) || AES-GCM ciphertext || tag(16)``
with the header (the first ``3 + label_len`` bytes) as associated data, so the
label is authenticated. Other flag bits must be zero. The body is a protobuf
``Packet`` (UDP) or ``PushPullState`` (push-pull) from
``protos/controlplane/gossip/v1/gossip.proto``.

A ``Packet`` is written by concatenating pre-encoded ``Message`` bytes behind
the version field, which is valid protobuf and lets the broadcast queue count
bytes without re-encoding.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from controlplane.gossip.keyring import ENCRYPTION_OVERHEAD, DecryptionFailed, Keyring
from controlplane.wire.v1 import gossip_pb2 as pb

FRAME_VERSION = 1
FLAG_ENCRYPTED = 0x01
PROTOCOL_VERSION = 1
MAX_LABEL_SIZE = 255

# Packet field 1 (protocol_version, varint) = 1: tag 0x08, value 0x01.
_PACKET_HEADER = bytes((0x08, PROTOCOL_VERSION))
# Packet field 2 (messages, length-delimited): tag 0x12.
_MESSAGE_TAG = 0x12
# Tag byte plus up to two varint length bytes (messages are below 16 KiB).
COMPOUND_OVERHEAD = 3
PACKET_HEADER_SIZE = len(_PACKET_HEADER)


_M = TypeVar("_M", bound=ProtoMessage)

# What protobuf raises on input that is not a valid message, and nothing else: a
# bug raises something else and is not mistaken for a peer's bad input. Both
# backends raise DecodeError for truncated input, bad varints and nesting deeper
# than 100 (upb and the pure-Python parser count depth; neither recurses far enough
# for RecursionError); the pure-Python backend raises UnicodeDecodeError for a
# string field that is not UTF-8 (upb raises DecodeError). tests/unit/gossip/
# test_parse.py checks what the installed protobuf raises.
PARSE_ERRORS: tuple[type[Exception], ...] = (DecodeError, UnicodeDecodeError)


def parse(message_type: type[_M], data: bytes) -> _M | None:
    """``data`` parsed as ``message_type``, or None when it is not one (hostile,
    truncated or foreign input). Never raises for bad input; a caller validates
    the fields it uses."""
    try:
        return message_type.FromString(data)
    except PARSE_ERRORS:
        return None


class FrameError(Exception):
    """A frame was refused; ``reason`` is the stats counter it increments."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def frame_header(label: str, encrypted: bool) -> bytes:
    raw = label.encode()
    if len(raw) > MAX_LABEL_SIZE:
        raise ValueError(f"label is {len(raw)} bytes, at most {MAX_LABEL_SIZE}")
    return bytes((FRAME_VERSION, FLAG_ENCRYPTED if encrypted else 0, len(raw))) + raw


def frame_overhead(label: str, encrypted: bool) -> int:
    """Bytes a frame adds around its body."""
    return 3 + len(label.encode()) + (ENCRYPTION_OVERHEAD if encrypted else 0)


def seal(header: bytes, body: bytes, keyring: Keyring | None) -> bytes:
    """Frame ``body`` behind ``header`` (from :func:`frame_header`), encrypting when keyed."""
    if keyring is None:
        return header + body
    return header + keyring.encrypt(body, header)


def open_frame(data: bytes, label: bytes, keyring: Keyring | None) -> bytes:
    """Body of a frame after checking version, label and (when keyed) authenticity.

    Raises FrameError with a stats reason; never anything else.
    """
    if len(data) < 3:
        raise FrameError("truncated")
    if data[0] != FRAME_VERSION:
        raise FrameError("frame_version")
    flags = data[1]
    label_len = data[2]
    body_start = 3 + label_len
    if len(data) < body_start:
        raise FrameError("truncated")
    if flags & ~FLAG_ENCRYPTED:
        raise FrameError("frame_flags")
    if data[3:body_start] != label:
        raise FrameError("label")
    if flags & FLAG_ENCRYPTED:
        if keyring is None:
            raise FrameError("encrypted_without_keyring")
        try:
            return keyring.decrypt(data[body_start:], data[:body_start])
        except DecryptionFailed:
            raise FrameError("decrypt") from None
    if keyring is not None:
        raise FrameError("plaintext")
    return data[body_start:]


# One-byte varints (0..127), by value: lengths, tags and small numbers are almost all.
_SMALL_VARINTS = tuple(bytes((value,)) for value in range(0x80))


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited_field(number: int, value: bytes) -> bytes:
    """One length-delimited protobuf field (a message, bytes or string) as it is
    encoded inside its parent: tag, length, value."""
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def encode_member_state(
    name: str, address: tuple[str, int], meta: bytes, incarnation: int, status: int
) -> bytes:
    """A serialized ``MemberState``, byte for byte what protobuf writes (fields in order,
    proto3 defaults left out), built without a message object: a push-pull state of
    thousands of members is encoded a record at a time, each once per change."""
    varint = _varint
    host = address[0].encode()
    port = address[1]
    address_body = b"\x0a" + varint(len(host)) + host if host else b""
    if port:
        address_body += b"\x10" + varint(port)
    encoded_name = name.encode()
    parts = [b"\x0a", varint(len(encoded_name)), encoded_name] if encoded_name else []
    parts += (b"\x12", varint(len(address_body)), address_body)
    if meta:
        parts += (b"\x1a", varint(len(meta)), meta)
    if incarnation:
        parts += (b"\x20", varint(incarnation))
    if status:
        parts += (b"\x28", varint(status))
    return b"".join(parts)


def packet_body(messages: list[bytes]) -> bytes:
    """A serialized ``Packet`` holding the given serialized ``Message``s."""
    parts = [_PACKET_HEADER]
    for message in messages:
        parts.append(bytes((_MESSAGE_TAG,)))
        parts.append(_varint(len(message)))
        parts.append(message)
    return b"".join(parts)


def decode_packet(body: bytes) -> pb.Packet:
    """Parse a ``Packet``; raises FrameError("decode"/"protocol_version")."""
    packet = parse(pb.Packet, body)
    if packet is None:
        raise FrameError("decode")
    if packet.protocol_version != PROTOCOL_VERSION:
        raise FrameError("protocol_version")
    return packet


def _address(address: tuple[str, int]) -> pb.Address:
    return pb.Address(host=address[0], port=address[1])


def decode_address(address: pb.Address) -> tuple[str, int] | None:
    """A member address from the wire, or None unless it is an IP literal and a
    port: members advertise IP addresses, and anything else (a name that would
    need a DNS lookup, NUL bytes) must not reach a socket. The host comes back in
    its canonical form, so one member cannot appear under two spellings."""
    port = address.port
    if not 0 < port < 65536:
        return None
    host = _canonical_hosts.get(address.host)
    if host is None:
        host = _canonical_host(address.host)
        if host is None:
            return None
        if len(_canonical_hosts) >= _CANONICAL_HOSTS_MAX:
            _canonical_hosts.clear()
        _canonical_hosts[address.host] = host
    return host, port


# Validated host spellings: a push-pull of thousands of members repeats the same
# few thousand addresses, and parsing each again would dominate the merge.
_CANONICAL_HOSTS_MAX = 65_536
_canonical_hosts: dict[str, str] = {}


# A dotted-quad IPv4 address in its only canonical spelling (no leading zeros):
# most members' addresses, accepted without building an address object.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _canonical_host(text: str) -> str | None:
    if _CANONICAL_IPV4.fullmatch(text):
        return text
    # A scope id names an interface of the sender's machine, meaningless here.
    if "%" in text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def encode_ping(seq_no: int, target: str, source_node: str) -> bytes:
    return pb.Message(
        ping=pb.Ping(seq_no=seq_no, target=target, source_node=source_node)
    ).SerializeToString()


def encode_indirect_ping(
    seq_no: int, target: str, target_address: tuple[str, int], nack: bool, source_node: str
) -> bytes:
    return pb.Message(
        indirect_ping=pb.IndirectPing(
            seq_no=seq_no,
            target=target,
            target_address=_address(target_address),
            nack=nack,
            source_node=source_node,
        )
    ).SerializeToString()


def encode_ack(seq_no: int, coordinate: pb.Coordinate | None = None) -> bytes:
    return pb.Message(ack=pb.Ack(seq_no=seq_no, coordinate=coordinate)).SerializeToString()


def encode_nack(seq_no: int) -> bytes:
    return pb.Message(nack=pb.Nack(seq_no=seq_no)).SerializeToString()


def encode_suspect(incarnation: int, node: str, from_node: str) -> bytes:
    return pb.Message(
        suspect=pb.Suspect(incarnation=incarnation, node=node, from_node=from_node)
    ).SerializeToString()


def encode_alive(incarnation: int, node: str, address: tuple[str, int], meta: bytes) -> bytes:
    return pb.Message(
        alive=pb.Alive(incarnation=incarnation, node=node, address=_address(address), meta=meta)
    ).SerializeToString()


def encode_dead(incarnation: int, node: str, from_node: str) -> bytes:
    return pb.Message(
        dead=pb.Dead(incarnation=incarnation, node=node, from_node=from_node)
    ).SerializeToString()


def encode_user(payload: bytes) -> bytes:
    return pb.Message(user=pb.UserBroadcast(payload=payload)).SerializeToString()
