"""AsyncClient never resolves host names on its event loop: IP literals are known at
construction, host names are resolved in a worker thread when a call needs a server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from controlplane.client import AsyncClient, ClientOptions
from controlplane.errors import Unavailable

# Nothing listens on port 1: every attempt is refused at once.
CLOSED = "127.0.0.1:1"


def test_host_names_resolve_off_the_loop_and_not_at_construction() -> None:
    calls: list[tuple[str, threading.Thread]] = []

    def resolver(seed: str) -> Sequence[str]:
        calls.append((seed, threading.current_thread()))
        return [CLOSED]

    async def scenario() -> None:
        loop_thread = threading.current_thread()
        options = ClientOptions(resolver=resolver, heartbeat=False, timeout=5)
        client = AsyncClient(["agents.example:7946", "127.0.0.2:1"], options)
        try:
            assert calls == [], "the constructor resolved a host name on the event loop"
            # The IP literal is a server at once, without the resolver.
            assert [server.address for server in client.servers()] == ["127.0.0.2:1"]
            with pytest.raises(Unavailable):
                await client.members()
        finally:
            await client.close()
        assert "agents.example:7946" in {seed for seed, _ in calls}
        assert all(thread is not loop_thread for _, thread in calls)

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
