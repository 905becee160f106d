"""A UDP endpoint that drains its socket on every readiness callback.

asyncio's datagram transports call back once per datagram; under a burst that
means one event-loop iteration per packet. Here the socket is non-blocking and
read in a loop until it would block (bounded per wake-up so timers still run),
which is what a gossip member receiving piggybacked traffic from many peers needs.
Sending never blocks either: a full socket buffer drops the datagram, which UDP
allows and SWIM tolerates, and the drop is counted.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

Address = tuple[str, int]

# memberlist sizes its UDP receive buffer at 2 MiB (net_transport.go udpRecvBufSize)
# so bursts of gossip are not lost while the loop is busy elsewhere.
RECEIVE_BUFFER_BYTES = 2 * 1024 * 1024
# Largest datagram we accept; the core drops anything above its own limit anyway.
MAX_DATAGRAM = 65_535
# Datagrams handled per wake-up before yielding to timers and other callbacks, and
# the loop time one wake-up may take: a datagram that announces many new members
# costs far more than an ack, so the count alone does not bound the stall.
MAX_BATCH = 256
MAX_BATCH_SECONDS = 0.005


@dataclass
class UdpStats:
    """Counters of the endpoint (not of the gossip protocol)."""

    received: int = 0
    sent: int = 0
    received_bytes: int = 0
    sent_bytes: int = 0
    send_dropped: int = 0
    wakeups: int = 0


class UdpEndpoint:
    """A bound, non-blocking UDP socket registered with the running loop."""

    def __init__(self, on_datagram: Callable[[Address, bytes], None]) -> None:
        self._on_datagram = on_datagram
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = UdpStats()

    @property
    def local_address(self) -> Address:
        assert self._socket is not None, "endpoint is not open"
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    def open(self, host: str, port: int) -> None:
        """Binds host:port; raises OSError (e.g. EADDRINUSE) if it cannot."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._drain)

    def _drain(self) -> None:
        sock = self._socket
        if sock is None:
            return
        self.stats.wakeups += 1
        deadline = time.perf_counter() + MAX_BATCH_SECONDS
        for _ in range(MAX_BATCH):
            if time.perf_counter() > deadline:
                # The rest waits in the socket buffer for the next wake-up.
                return
            try:
                data, source = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ICMP errors surface here (e.g. port unreachable after a send); they
                # carry no datagram and must not stop the reader.
                continue
            self.stats.received += 1
            self.stats.received_bytes += len(data)
            self._on_datagram((str(source[0]), int(source[1])), data)

    def send(self, dest: Address, data: bytes) -> None:
        sock = self._socket
        if sock is None:
            self.stats.send_dropped += 1
            return
        try:
            # The core only hands out IP literals (codec.decode_address); the wider
            # net keeps a malformed destination from escaping into the event loop.
            sock.sendto(data, dest)
            self.stats.sent += 1
            self.stats.sent_bytes += len(data)
        except (OSError, ValueError, TypeError, OverflowError):
            self.stats.send_dropped += 1

    def close(self) -> None:
        if self._socket is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._socket.fileno())
        self._socket.close()
        self._socket = None
