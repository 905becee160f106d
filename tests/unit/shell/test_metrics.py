"""controlplane/shell/metrics.py and the guard's observer: what each count means,
checked on the counters themselves, without an agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import grpc.aio
import pytest

from controlplane.api.errors import guard
from controlplane.errors import NotFound
from controlplane.membership import EventType, MemberEvent, MemberInfo, MemberStatus
from controlplane.shell.metrics import (
    FLAP_TIMEOUT,
    RPC_BUCKETS,
    MemberEventMetrics,
    RpcMetrics,
)
from controlplane.shell.metrics_http import answer


def member(name: str) -> MemberInfo:
    return MemberInfo(name, ("10.0.0.1", 7946), {}, MemberStatus.FAILED, 1)


def event(kind: EventType, *names: str) -> MemberEvent:
    return MemberEvent(kind, tuple(member(name) for name in names))


def test_a_member_that_joins_within_the_flap_timeout_of_failing_is_a_flap() -> None:
    now = [0.0]
    metrics = MemberEventMetrics(clock=lambda: now[0])
    metrics.on_event(event(EventType.MEMBER_FAILED, "a", "b"))
    now[0] = FLAP_TIMEOUT - 1
    metrics.on_event(event(EventType.MEMBER_JOIN, "a"))
    now[0] = FLAP_TIMEOUT + 1
    metrics.on_event(event(EventType.MEMBER_JOIN, "b"))  # too late: a return, not a flap
    metrics.on_event(event(EventType.MEMBER_JOIN, "c"))  # never failed
    assert metrics.flaps == 1
    assert metrics.events[EventType.MEMBER_FAILED] == 2
    assert metrics.events[EventType.MEMBER_JOIN] == 3


def test_a_member_that_left_after_failing_does_not_flap_when_it_joins() -> None:
    metrics = MemberEventMetrics(clock=lambda: 0.0)
    metrics.on_event(event(EventType.MEMBER_FAILED, "a"))
    metrics.on_event(event(EventType.MEMBER_LEAVE, "a"))
    metrics.on_event(event(EventType.MEMBER_JOIN, "a"))
    assert metrics.flaps == 0


def test_failure_times_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controlplane.shell.metrics.FAILURES_KEPT", 3)
    metrics = MemberEventMetrics(clock=lambda: 0.0)
    metrics.on_event(event(EventType.MEMBER_FAILED, "a", "b", "c", "d"))
    metrics.on_event(event(EventType.MEMBER_JOIN, "a", "d"))
    assert metrics.flaps == 1  # "a", the oldest, was forgotten


def test_latency_buckets_are_cumulative_with_an_infinite_bucket() -> None:
    rpcs = RpcMetrics()
    path = "/controlplane.v1.Membership/ListMembers"
    for seconds in (0.0001, 0.003, 0.003, 60.0):
        rpcs.observe(path, False, grpc.StatusCode.OK, seconds)
    (_, _, histogram) = list(rpcs.families())
    samples = {
        (s.name, s.labels.get("le")): s.value
        for s in histogram.samples
        if s.labels["grpc_method"] == "ListMembers"
    }
    assert samples["grpc_server_handling_seconds_bucket", repr(RPC_BUCKETS[0])] == 1
    assert samples["grpc_server_handling_seconds_bucket", "0.005"] == 3
    assert samples["grpc_server_handling_seconds_bucket", "10.0"] == 3
    assert samples["grpc_server_handling_seconds_bucket", "+Inf"] == 4
    assert samples["grpc_server_handling_seconds_count", None] == 4
    assert samples["grpc_server_handling_seconds_sum", None] == pytest.approx(60.0061)


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self) -> None:
        self.aborted: grpc.StatusCode | None = None

    async def abort(self, code: grpc.StatusCode, details: str, trailers: Any = None) -> None:
        self.aborted = code
        raise grpc.aio.AbortError()

    def code(self) -> grpc.StatusCode | None:
        return self.aborted


async def test_the_guard_tells_the_observer_how_each_call_ended() -> None:
    rpcs = RpcMetrics()

    async def answers(request: object, context: object) -> str:
        return "ok"

    async def refuses(request: object, context: object) -> str:
        raise NotFound("no such pool")

    async def breaks(request: object, context: object) -> str:
        raise KeyError("bug")

    async def hangs(request: object, context: object) -> str:
        await asyncio.sleep(60)
        return "late"

    context = cast(Any, _Context())
    assert await guard("/s/A", answers, None, rpcs)(None, context) == "ok"
    for name, behavior in (("R", refuses), ("B", breaks)):
        with pytest.raises(grpc.aio.AbortError):
            await guard(f"/s/{name}", behavior, None, rpcs)(None, context)
    task = asyncio.ensure_future(guard("/s/H", hangs, None, rpcs)(None, context))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dict(rpcs.handled) == {
        ("/s/A", False, grpc.StatusCode.OK): 1,
        ("/s/R", False, grpc.StatusCode.NOT_FOUND): 1,
        ("/s/B", False, grpc.StatusCode.INTERNAL): 1,
        ("/s/H", False, grpc.StatusCode.CANCELLED): 1,
    }
    assert sum(rpcs.started.values()) == 4


class _SendsOnAbort(_Context):
    """grpc.aio's abort sends the status before it raises: a caller may have it
    (and scrape the metrics) while the handler has not finished."""

    def __init__(self, rpcs: RpcMetrics, seen: list[int]) -> None:
        super().__init__()
        self._rpcs, self._seen = rpcs, seen

    async def abort(self, code: grpc.StatusCode, details: str, trailers: Any = None) -> None:
        self._seen.append(sum(self._rpcs.handled.values()))
        await super().abort(code, details, trailers)


async def test_a_failed_call_is_counted_before_its_status_is_sent() -> None:
    rpcs = RpcMetrics()
    seen: list[int] = []

    async def refuses(request: object, context: object) -> str:
        raise NotFound("no such pool")

    async def refuses_stream(request: object, context: object) -> AsyncIterator[int]:
        raise NotFound("no such ring")
        yield 0

    context = cast(Any, _SendsOnAbort(rpcs, seen))
    with pytest.raises(grpc.aio.AbortError):
        await guard("/s/R", refuses, None, rpcs)(None, context)
    with pytest.raises(grpc.aio.AbortError):
        async for _ in guard("/s/W", refuses_stream, None, rpcs)(None, context):
            pass
    assert seen == [1, 2]


async def test_a_stream_is_observed_once_when_it_ends() -> None:
    rpcs = RpcMetrics()

    async def three(request: object, context: object) -> AsyncIterator[int]:
        for index in range(3):
            yield index

    guarded = guard("/s/Watch", three, None, rpcs)
    assert [item async for item in guarded(None, cast(Any, _Context()))] == [0, 1, 2]
    assert dict(rpcs.handled) == {("/s/Watch", True, grpc.StatusCode.OK): 1}


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"GET /metrics HTTP/1.1", b"HTTP/1.1 200 OK"),
        (b"GET /metrics?x=1 HTTP/1.0", b"HTTP/1.1 200 OK"),
        (b"GET / HTTP/1.1", b"HTTP/1.1 200 OK"),
        (b"GET /debug HTTP/1.1", b"HTTP/1.1 404"),
        (b"PUT /metrics HTTP/1.1", b"HTTP/1.1 405"),
        (b"GET /metrics", b"HTTP/1.1 400"),
        (b"GET /metrics SPDY/3", b"HTTP/1.1 400"),
        (b"\xff\xfe", b"HTTP/1.1 400"),
    ],
)
def test_each_request_line_gets_its_answer(line: bytes, status: bytes) -> None:
    response = answer(line, lambda: b"m 1\n")
    assert response.startswith(status)
    assert response.endswith(b"m 1\n") == status.endswith(b"200 OK")


def test_head_answers_the_length_without_the_body() -> None:
    response = answer(b"HEAD /metrics HTTP/1.1", lambda: b"m 1\n")
    assert b"Content-Length: 4\r\n" in response
    assert response.endswith(b"\r\n\r\n")
