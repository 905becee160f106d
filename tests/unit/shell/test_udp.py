"""The UDP endpoint: sends that cannot be made are dropped and counted, never raised."""

from __future__ import annotations

import asyncio

from controlplane.shell.udp import UdpEndpoint


async def test_udp_send_to_a_malformed_host_is_dropped_not_raised() -> None:
    endpoint = UdpEndpoint(lambda source, data: None)
    endpoint.open("127.0.0.1", 0)
    try:
        for dest in (("a\x00b", 1), ("10.0.0.1", 70000)):
            endpoint.send(dest, b"x")
        assert endpoint.stats.send_dropped == 2
        await asyncio.sleep(0)
    finally:
        endpoint.close()
