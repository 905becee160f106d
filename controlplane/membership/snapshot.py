"""The snapshot file, pure part: the records to append, compaction, and parsing at start.

The format is Serf's (``serf/snapshot.go``), one record per line::

    alive: <name> <host> <port>     a member became alive (member-join)
    not-alive: <name>               it left or failed
    clock: <n>                      last membership Lamport time seen
    event-clock: <n>                last user-event Lamport time seen
    leave                           this agent left gracefully: do not rejoin
    # ...                           comment

The layer emits :class:`SnapshotRecord` effects; the shell appends ``line``
verbatim, or, when ``rewrite`` is true, replaces the whole file with it
(write a temporary file, fsync, rename). A rewrite is asked for when the
appended bytes pass ``max(alive members * 128 * 2, 128 KiB)`` (snapshot.go
snapshotBytesPerNode, snapshotCompactionThreshold, snapshotSizeLimit).

At start the shell reads the file and calls :func:`parse_snapshot`, which
never raises, and hands the :class:`SnapshotState` to ``Membership``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from controlplane.gossip.state import Address
from controlplane.membership.validation import valid_node_name

# The characters of an IP literal as the gossip codec canonicalizes it (no scope id).
_HOST = re.compile(r"[0-9A-Fa-f.:]{1,45}")


def writable(name: str, address: Address | None = None) -> bool:
    """Every field of a record is from an alphabet without spaces and line breaks, so
    no name or address can end its record early and forge the next one (a ``leave``
    line, say). The layers above validate names already; this is the last gate."""
    if not valid_node_name(name):
        return False
    return address is None or (_HOST.fullmatch(address[0]) is not None and 0 < address[1] < 65536)


# snapshot.go snapshotBytesPerNode: expected bytes per alive member in a compact file.
SNAPSHOT_BYTES_PER_NODE = 128
# snapshot.go snapshotCompactionThreshold: compact when the file is this many times too big.
SNAPSHOT_COMPACTION_THRESHOLD = 2


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """Effect: append ``line`` to the snapshot file, or replace the file with it (``rewrite``)."""

    line: str
    rewrite: bool = False

    @property
    def data(self) -> bytes:
        return self.line.encode()


@dataclass(frozen=True, slots=True)
class SnapshotState:
    """What a snapshot file says: whom to rejoin and where the clocks were."""

    # Members alive at the last record about them, in the order they were last seen.
    members: tuple[tuple[str, Address], ...] = ()
    # Last membership Lamport time (serf ``clock:``).
    lamport_time: int = 0
    # Last user-event Lamport time (serf ``event-clock:``); older events are not replayed.
    event_time: int = 0
    # The last lifecycle record was a graceful leave (members were cleared, as in Serf,
    # unless replayed with rejoin_after_leave).
    left: bool = False
    # Bytes of the file parsed: the append offset for compaction.
    size: int = 0

    def addresses(self, exclude: str = "") -> list[Address]:
        """Addresses to rejoin through (every member but ``exclude``)."""
        return [address for name, address in self.members if name != exclude]


def _parse_address(host: str, port: str) -> Address | None:
    # isascii: str.isdigit() also accepts superscripts, which int() refuses.
    if not host or not (port.isascii() and port.isdigit()) or len(port) > 5:
        return None
    # Members advertise IP addresses (config.py); anything else was never written here.
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    number = int(port)
    if not 0 < number < 65536:
        return None
    return (host, number)


def parse_snapshot(
    data: bytes, *, rejoin_after_leave: bool = False
) -> tuple[SnapshotState, list[str]]:
    """Replay a snapshot file. Never raises: bad lines are skipped and listed as problems.

    A graceful leave forgets the members before it, as Serf's replay does, unless
    ``rejoin_after_leave`` (Serf's RejoinAfterLeave: the leave is ignored); ``left``
    says either way whether the last lifecycle record was a leave."""
    problems: list[str] = []
    members: dict[str, Address] = {}
    lamport_time = 0
    event_time = 0
    left = False
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        # No newline at the end: the agent died mid-write; the partial record is dropped
        # (snapshot.go replay stops at the first incomplete line).
        problems.append(f"line {len(lines)}: truncated record ignored: {lines[-1][:80]!r}")
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if "\ufffd" in line:
            problems.append(f"line {number}: not UTF-8, ignored")
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("alive: "):
            parts = line[len("alive: ") :].split(" ")
            address = _parse_address(parts[1], parts[2]) if len(parts) == 3 else None
            if address is None or not valid_node_name(parts[0]):
                problems.append(f"line {number}: bad alive record: {line[:80]!r}")
                continue
            members.pop(parts[0], None)
            members[parts[0]] = address
            left = False
        elif line.startswith("not-alive: "):
            name = line[len("not-alive: ") :]
            if not valid_node_name(name):
                problems.append(f"line {number}: bad not-alive record: {line[:80]!r}")
                continue
            members.pop(name, None)
        elif line.startswith(("clock: ", "event-clock: ")):
            key, _, value = line.partition(": ")
            # ASCII digits only: the writer writes no others, and int() refuses some
            # characters that str.isdigit() accepts (superscripts).
            if not (value.isascii() and value.isdigit()) or len(value) > 20 or int(value) >= 2**64:
                problems.append(f"line {number}: bad {key} record: {line[:80]!r}")
                continue
            if key == "clock":
                lamport_time = int(value)
            else:
                event_time = int(value)
        elif line == "leave":
            # snapshot.go replay: a graceful leave forgets the members (no rejoin) unless
            # RejoinAfterLeave. The clocks are kept: they are only lower bounds and keep
            # old events from replaying.
            if not rejoin_after_leave:
                members.clear()
            left = True
        else:
            problems.append(f"line {number}: unrecognized record: {line[:80]!r}")
    state = SnapshotState(
        members=tuple(members.items()),
        lamport_time=lamport_time,
        event_time=event_time,
        left=left,
        size=len(data),
    )
    return state, problems


class SnapshotWriter:
    """Turns member and clock changes into snapshot records; asks for compaction."""

    def __init__(self, state: SnapshotState | None, min_compact_size: int) -> None:
        state = state or SnapshotState()
        self._alive: dict[str, Address] = dict(state.members)
        self._clock = state.lamport_time
        self._event_clock = state.event_time
        self._offset = state.size
        self._min_compact_size = min_compact_size
        self._left = state.left
        self.compactions = 0

    @property
    def offset(self) -> int:
        return self._offset

    def alive(self, name: str, address: Address) -> list[SnapshotRecord]:
        if not writable(name, address):
            return []
        self._alive[name] = address
        self._left = False
        return self._append(f"alive: {name} {address[0]} {address[1]}\n")

    def not_alive(self, name: str) -> list[SnapshotRecord]:
        if not writable(name) or self._alive.pop(name, None) is None:
            return []
        return self._append(f"not-alive: {name}\n")

    def clock(self, last_seen: int) -> list[SnapshotRecord]:
        """snapshot.go updateClock: record the last Lamport time seen when it moved."""
        if last_seen <= self._clock:
            return []
        self._clock = last_seen
        return self._append(f"clock: {last_seen}\n")

    def event_clock(self, ltime: int) -> list[SnapshotRecord]:
        """snapshot.go processUserEvent: record a newer user-event time."""
        if ltime <= self._event_clock:
            return []
        self._event_clock = ltime
        return self._append(f"event-clock: {ltime}\n")

    def leave(self) -> list[SnapshotRecord]:
        self._alive.clear()
        self._left = True
        return self._append("leave\n")

    def compacted(self) -> str:
        """The whole file rewritten: alive members, then the clocks (snapshot.go compact)."""
        lines = [f"alive: {name} {host} {port}\n" for name, (host, port) in self._alive.items()]
        lines.append(f"clock: {self._clock}\n")
        lines.append(f"event-clock: {self._event_clock}\n")
        if self._left:
            lines.append("leave\n")
        return "".join(lines)

    def _max_size(self) -> int:
        estimate = len(self._alive) * SNAPSHOT_BYTES_PER_NODE
        return max(estimate * SNAPSHOT_COMPACTION_THRESHOLD, self._min_compact_size)

    def _append(self, line: str) -> list[SnapshotRecord]:
        self._offset += len(line.encode())
        if self._offset > self._max_size():
            content = self.compacted()
            self._offset = len(content.encode())
            self.compactions += 1
            return [SnapshotRecord(content, rewrite=True)]
        return [SnapshotRecord(line)]
