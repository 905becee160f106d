"""The per-attempt deadline of both clients, without a network: which deadline each
attempt is given and where the call goes when an attempt is cut off.

The invokers below stand in for the generated stubs: they record the address and
the timeout of each attempt and fail or answer as a hung, dead or healthy agent
would. Channels are created (lazily, no connection) but never used."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from controlplane.client import AsyncClient, Client, ClientOptions
from controlplane.errors import DeadlineExceeded, Unavailable

SEEDS = ["127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"]
READ = "Ring/GetNode"
WRITE = "Ring/AddNode"


class _Failure(grpc.RpcError):
    """A transport failure, as gRPC raises it when no agent answered."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "no answer"

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:  # type: ignore[override]
        return ()


HUNG = _Failure(grpc.StatusCode.DEADLINE_EXCEEDED)
REFUSED = _Failure(grpc.StatusCode.UNAVAILABLE)


class Agents:
    """Answers per address: an exception to raise (once per entry) or success."""

    def __init__(self, failures: dict[str, list[grpc.RpcError]]) -> None:
        self.failures = failures
        self.attempts: list[tuple[str, float]] = []
        self.head = ""

    def start(self, client: Client | AsyncClient) -> None:
        head = client._failover.find_server()
        assert head is not None
        self.head = head.address
        if HEAD in self.failures:
            self.failures[self.head] = self.failures.pop(HEAD)
        client._stubs = _Stubs  # type: ignore[assignment,method-assign]

    def invoker(self, stubs: Any, timeout: float) -> str:
        address: str = stubs.address
        self.attempts.append((address, timeout))
        pending = self.failures.get(address, [])
        if pending:
            raise pending.pop(0)
        return address


HEAD = "head"
"""Stands for whichever seed the client's pool (shuffled) puts first."""


class _Stubs:
    def __init__(self, address: str) -> None:
        self.address = address


def sync_call(options: ClientOptions, agents: Agents, method: str, seeds: list[str] = SEEDS) -> str:
    with Client(seeds, options) as client:
        agents.start(client)
        answer: str = client._unary(method, agents.invoker, None)
        return answer


def async_call(
    options: ClientOptions, agents: Agents, method: str, seeds: list[str] = SEEDS
) -> str:
    async def call() -> str:
        async with AsyncClient(seeds, options) as client:
            agents.start(client)

            async def invoke(stubs: Any, timeout: float) -> str:
                return agents.invoker(stubs, timeout)

            return await client._unary(method, invoke, None)

    return asyncio.run(call())


CALLS = [pytest.param(sync_call, id="Client"), pytest.param(async_call, id="AsyncClient")]
Call = Callable[..., str]
OPTIONS = ClientOptions(heartbeat=False, timeout=5.0, attempt_timeout=0.5, seed=1)


@pytest.mark.parametrize("call", CALLS)
def test_a_hung_agent_costs_one_attempt_deadline_then_the_next_answers(call: Call) -> None:
    agents = Agents({HEAD: [HUNG]})
    answered = call(OPTIONS, agents, READ)
    assert answered != agents.head
    assert [address for address, _ in agents.attempts] == [agents.head, answered]
    # Both attempts were bounded by the attempt deadline, not the call's 5 s.
    assert all(timeout == pytest.approx(0.5) for _, timeout in agents.attempts)


@pytest.mark.parametrize("call", CALLS)
def test_writes_are_never_cut_short(call: Call) -> None:
    agents = Agents({})
    call(OPTIONS, agents, WRITE)
    ((_, timeout),) = agents.attempts
    assert timeout > 4.0


@pytest.mark.parametrize("call", CALLS)
def test_the_last_server_cut_off_gets_the_rest_of_the_deadline(call: Call) -> None:
    # One agent, slow rather than hung: its second attempt may use what is left.
    agents = Agents({SEEDS[0]: [HUNG]})
    assert call(OPTIONS, agents, READ, [SEEDS[0]]) == SEEDS[0]
    (first, second) = agents.attempts
    assert first[0] == SEEDS[0]
    assert first[1] == pytest.approx(0.5)
    assert second[0] == SEEDS[0]
    assert second[1] > 4.0


@pytest.mark.parametrize("call", CALLS)
def test_a_refused_last_server_is_not_tried_again(call: Call) -> None:
    agents = Agents({SEEDS[0]: [REFUSED, REFUSED]})
    with pytest.raises(Unavailable):
        call(OPTIONS, agents, READ, [SEEDS[0]])


@pytest.mark.parametrize("call", CALLS)
def test_every_server_hung_ends_after_one_full_retry(call: Call) -> None:
    agents = Agents({seed: [HUNG, HUNG] for seed in SEEDS})
    with pytest.raises((Unavailable, DeadlineExceeded)):
        call(OPTIONS, agents, READ)
    timeouts = [timeout for _, timeout in agents.attempts]
    assert timeouts[:3] == [pytest.approx(0.5)] * 3
    assert len(timeouts) == 4
    assert timeouts[3] > 3.0


@pytest.mark.parametrize("call", CALLS)
def test_without_an_attempt_deadline_an_attempt_may_use_the_whole_call(call: Call) -> None:
    agents = Agents({})
    options = ClientOptions(heartbeat=False, timeout=5.0, attempt_timeout=None)
    call(options, agents, READ)
    ((_, timeout),) = agents.attempts
    assert timeout > 4.0


def test_the_attempt_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempt_timeout"):
        ClientOptions(attempt_timeout=0)
