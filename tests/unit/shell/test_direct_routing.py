"""Direct datagrams are opened once by the runtime, with the gossip keyring and
label, and reach only the subsystem of their channel; the rest are counted."""

from __future__ import annotations

from controlplane.gossip.direct import seal_direct
from controlplane.gossip.keyring import Keyring
from controlplane.shell.runtime import GossipRuntime
from tests.unit.membership.helpers import make

KEY = bytes(range(16))
SOURCE = ("10.0.0.9", 7946)


def test_each_channel_gets_its_own_datagrams_opened_and_the_rest_are_counted() -> None:
    keyring = Keyring([KEY])
    runtime = GossipRuntime(make(), keyring=keyring, label="prod")
    got: dict[str, list[tuple[tuple[str, int], bytes]]] = {"election": [], "query": []}
    runtime.on_direct("election", lambda source, payload: got["election"].append((source, payload)))
    runtime.on_direct("query", lambda source, payload: got["query"].append((source, payload)))

    runtime._on_datagram(SOURCE, seal_direct("election", b"vote", "prod", keyring))
    runtime._on_datagram(SOURCE, seal_direct("query", b"ack", "prod", keyring))
    assert got == {"election": [(SOURCE, b"vote")], "query": [(SOURCE, b"ack")]}

    runtime._on_datagram(SOURCE, seal_direct("elsewhere", b"x", "prod", keyring))
    runtime._on_datagram(SOURCE, seal_direct("election", b"x", "prod", Keyring([bytes(16)])))
    runtime._on_datagram(SOURCE, seal_direct("election", b"x", "staging", keyring))
    runtime._on_datagram(SOURCE, seal_direct("election", b"x", "prod", None))
    assert runtime.direct_dropped == {"unknown_channel": 1, "frame": 3}
    assert got == {"election": [(SOURCE, b"vote")], "query": [(SOURCE, b"ack")]}
