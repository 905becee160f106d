"""The query RPCs of controlplane.v1.Membership: Query, WatchQueries, RespondQuery.

They translate between the public messages and the agent's query driver
(``shell/queries.py``); the limits are those of ``membership/queries.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio

from controlplane.errors import InvalidArgument
from controlplane.membership.queries import (
    MAX_TIMEOUT,
    QueryAck,
    QueryDone,
    QueryParams,
    QueryResponse,
    check_response,
)
from controlplane.membership.validation import check_query_name
from controlplane.shell.queries import QueryDriver
from controlplane.v1 import membership_pb2 as pb

# Names a WatchQueries request may list.
MAX_WATCH_NAMES = 64


def params_from_request(request: pb.QueryRequest) -> QueryParams:
    """The query a request asks for; InvalidArgument for a timeout out of range (the
    other fields are checked by the query layer)."""
    timeout = 0.0
    if request.HasField("timeout"):
        timeout = request.timeout.ToNanoseconds() / 1e9
        if not 0 < timeout <= MAX_TIMEOUT or math.isnan(timeout):
            raise InvalidArgument.for_field(
                "timeout", f"must be more than 0 and at most {MAX_TIMEOUT:g} s, got {timeout:g}"
            )
    return QueryParams(
        name=request.name,
        payload=request.payload,
        filter_nodes=tuple(request.filter_nodes),
        filter_tags=dict(request.filter_tags),
        request_ack=request.request_ack,
        relay_factor=request.relay_factor,
        timeout=timeout,
    )


class QueryRpcs:
    """Query, WatchQueries and RespondQuery over one agent's QueryDriver."""

    def __init__(self, driver: QueryDriver) -> None:
        self._driver = driver

    async def Query(
        self, request: pb.QueryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.QueryResponse]:
        query_id, lamport_time, queue = self._driver.ask(params_from_request(request))
        try:
            yield pb.QueryResponse(dispatched=pb.QueryDispatched(lamport_time=lamport_time))
            while True:
                effect = await queue.get()
                if isinstance(effect, QueryAck):
                    yield pb.QueryResponse(ack=pb.QueryAck(**{"from": effect.member}))
                elif isinstance(effect, QueryResponse):
                    answer = pb.QueryMemberResponse(payload=effect.payload)
                    setattr(answer, "from", effect.member)
                    yield pb.QueryResponse(response=answer)
                elif isinstance(effect, QueryDone):
                    done = pb.QueryDone(
                        acks=effect.acks, responses=effect.responses, lamport_time=lamport_time
                    )
                    yield pb.QueryResponse(done=done)
                    return
        finally:
            self._driver.forget(query_id)

    async def WatchQueries(
        self, request: pb.WatchQueriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchQueriesResponse]:
        if len(request.names) > MAX_WATCH_NAMES:
            raise InvalidArgument.for_field("names", f"at most {MAX_WATCH_NAMES} names")
        for name in request.names:
            check_query_name(name, "names")
        watcher = self._driver.watch(request.names)
        try:
            while True:
                query = await watcher.queue.get()
                message = pb.WatchQueriesResponse(
                    id=query.handle,
                    name=query.name,
                    payload=query.payload,
                    origin=query.origin,
                    lamport_time=query.lamport_time,
                )
                message.remaining.FromNanoseconds(
                    # The query's deadline is on the gossip runtime's clock.
                    max(0, round((query.deadline - time.monotonic()) * 1e9))
                )
                yield message
        finally:
            self._driver.unwatch(watcher)

    async def RespondQuery(
        self, request: pb.RespondQueryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RespondQueryResponse:
        check_response(request.payload)
        self._driver.respond(request.id, request.payload)
        return pb.RespondQueryResponse()
