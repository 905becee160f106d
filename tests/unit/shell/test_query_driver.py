"""The agent's query driver: a query within its own size limit that does not fit one
gossip packet (a long node name and cluster label around it) is refused whole."""

from __future__ import annotations

import asyncio
import random

import pytest

from controlplane.errors import InvalidArgument
from controlplane.gossip import GossipConfig
from controlplane.membership import Membership, MembershipConfig
from controlplane.membership.queries import QueryParams
from controlplane.shell.queries import QueryDriver, QueryHandlers
from controlplane.shell.runtime import GossipRuntime

NAME = "n" * 128
LABEL = "l" * 250


def test_a_query_too_large_for_a_packet_is_refused_and_leaves_nothing_open() -> None:
    async def scenario() -> None:
        layer = Membership(
            GossipConfig.lan(),
            MembershipConfig(),
            NAME,
            ("127.0.0.1", 7946),
            rng=random.Random(1),
            now=0.0,
            label=LABEL,
        )
        runtime = GossipRuntime(layer, label=LABEL)
        runtime.open("127.0.0.1", 0)
        driver = QueryDriver(runtime, QueryHandlers({}, 5.0, NAME), rng=random.Random(2))
        with pytest.raises(InvalidArgument) as caught:
            driver.ask(QueryParams("q", payload=b"x" * 870))
        assert "payload" in str(caught.value)
        assert driver.queries.outstanding() == 0
        # A query that fits is still asked.
        query_id, _, queue = driver.ask(
            QueryParams("q", payload=b"x" * 100, request_ack=True, timeout=1.0)
        )
        assert driver.queries.outstanding() == 1
        assert queue.empty() is False  # its own ack
        driver.forget(query_id)
        await driver.close()
        await runtime.close()

    asyncio.run(scenario())
