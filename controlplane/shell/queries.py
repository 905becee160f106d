"""Drives the agent's Serf queries (``membership/queries.py``) on the running loop.

The driver owns the asyncio side of queries: query broadcasts go out on gossip
channel ``query`` and come in through it, acks and responses travel as direct
datagrams on the same channel, one timer follows the queries' next deadline. It
hands each received query to the agent's query handlers (processes, see
:class:`QueryHandlers`) and to the clients watching queries (``WatchQueries``),
and streams the acks and responses of the queries this agent asks to their
callers (``Query``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shlex
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from controlplane.errors import ControlPlaneError, ResourceExhausted
from controlplane.membership import ChannelDelivery, ChannelStateReceived
from controlplane.membership.queries import (
    CHANNEL,
    QUERY_RESPONSE_SIZE_LIMIT,
    BroadcastQuery,
    Queries,
    QueryAck,
    QueryDone,
    QueryParams,
    QueryReceived,
    QueryResponse,
    SendReply,
)
from controlplane.membership.queries import Effect as QueryEffect
from controlplane.shell.childprocess import RunningChildren, run_child
from controlplane.shell.deadline import DeadlineTimer
from controlplane.shell.runtime import Address, GossipRuntime

log = logging.getLogger("controlplane.queries")

# Handler processes running at once; a query that arrives while they all run gets
# no response from a handler (its ack, if asked, was sent on receipt).
MAX_HANDLER_PROCESSES = 4
# Clients watching queries on one agent (WatchQueries), and queries queued per watcher.
MAX_WATCHERS = 64
WATCH_QUEUE = 256
# What a failing handler wrote on stderr, kept for the log line.
STDERR_LOGGED = 512
# Environment variables of the agent's own settings never reach a handler: they may
# hold the gossip key or an API token.
_SETTING_PREFIX = "CONTROLPLANE_"


def handler_argv(command: str) -> list[str]:
    """A handler command split as a POSIX shell would split it, but never run by one."""
    argv = shlex.split(command)
    if not argv:
        raise ValueError("is an empty command")
    return argv


@dataclass(slots=True)
class HandlerStats:
    """What the handlers did, for `info` and tests."""

    started: int = 0
    responded: int = 0
    failed: int = 0
    timed_out: int = 0
    skipped_busy: int = 0


class QueryHandlers:
    """Runs the agent's query handlers (``--query-handler NAME=COMMAND``): the command
    without a shell, the payload on stdin, Serf's environment, a timeout; its stdout
    (truncated to the response limit) is the response when it exits with 0."""

    def __init__(
        self,
        commands: Mapping[str, str],
        timeout: float,
        self_name: str,
        *,
        limit: int = MAX_HANDLER_PROCESSES,
    ) -> None:
        self._argv = {name: handler_argv(command) for name, command in commands.items()}
        self._timeout = timeout
        self._self_name = self_name
        self._limit = limit
        self._running = 0
        self._busy_logged = False
        self.stats = HandlerStats()
        self._children = RunningChildren()
        self._executor: ThreadPoolExecutor | None = None

    def __bool__(self) -> bool:
        return bool(self._argv)

    def argv_for(self, name: str) -> list[str] | None:
        """The handler of query ``name``: its own, else the ``*`` handler, else none."""
        return self._argv.get(name, self._argv.get("*"))

    def _environment(self, query: QueryReceived) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTING_PREFIX)}
        ltime = str(query.lamport_time)
        env.update(
            {
                "CONTROLPLANE_EVENT": "query",
                "CONTROLPLANE_QUERY_NAME": query.name,
                "CONTROLPLANE_QUERY_LTIME": ltime,
                "CONTROLPLANE_SELF_NAME": self._self_name,
                # Serf's names, so that Serf handler scripts run unchanged.
                "SERF_EVENT": "query",
                "SERF_QUERY_NAME": query.name,
                "SERF_QUERY_LTIME": ltime,
                "SERF_SELF_NAME": self._self_name,
            }
        )
        return env

    async def run(self, query: QueryReceived) -> bytes | None:
        """The handler's response to ``query``, or None (no handler, busy, failed)."""
        argv = self.argv_for(query.name)
        if argv is None:
            return None
        if self._running >= self._limit:
            self.stats.skipped_busy += 1
            if not self._busy_logged:
                self._busy_logged = True
                log.warning(
                    "query %r gets no response: %d handlers are running already (the limit);"
                    " later queries skipped for the same reason are only counted",
                    query.name,
                    self._limit,
                )
            return None
        self._running += 1
        self.stats.started += 1
        try:
            return await self._invoke(argv, query)
        finally:
            self._running -= 1

    async def _invoke(self, argv: list[str], query: QueryReceived) -> bytes | None:
        # A worker thread per running handler (at most `limit`): it starts the process
        # and serves its pipes (shell/childprocess.py says why not the event loop).
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._limit, thread_name_prefix="query-handler")
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(
                self._executor,
                run_child,
                argv,
                self._environment(query),
                query.payload,
                self._timeout,
                QUERY_RESPONSE_SIZE_LIMIT,
                STDERR_LOGGED,
                self._children,
            )
        except OSError as error:
            self.stats.failed += 1
            log.warning("query handler %r for %r cannot start: %s", argv[0], query.name, error)
            return None
        if outcome.stopped:
            return None
        if outcome.timed_out:
            self.stats.timed_out += 1
            log.warning(
                "query handler %r for %r killed after %g s", argv[0], query.name, self._timeout
            )
            return None
        if outcome.exit_code != 0:
            self.stats.failed += 1
            log.warning(
                "query handler %r for %r exited with %d: %s",
                argv[0],
                query.name,
                outcome.exit_code,
                outcome.stderr.decode(errors="replace").strip(),
            )
            return None
        # Serf answers only with output: a handler that prints nothing sends no response.
        if not outcome.stdout:
            return None
        self.stats.responded += 1
        return outcome.stdout

    def close(self) -> None:
        """Ends the running handlers (and their children) and their worker threads."""
        self._children.kill_all()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(slots=True, eq=False)
class _Watcher:
    names: frozenset[str]
    queue: asyncio.Queue[QueryReceived] = field(default_factory=lambda: asyncio.Queue(WATCH_QUEUE))
    dropped: int = 0


# What the caller of ask() reads: acks, responses, then QueryDone.
AskedEffect = QueryAck | QueryResponse | QueryDone


class QueryDriver:
    """One agent's queries, live: see the module docstring."""

    def __init__(
        self,
        runtime: GossipRuntime,
        handlers: QueryHandlers,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._runtime = runtime
        self.queries = Queries(runtime.layer, rng or random.Random())
        self.handlers = handlers
        self._asked: dict[int, asyncio.Queue[AskedEffect]] = {}
        self._watchers: list[_Watcher] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer = DeadlineTimer(self._on_timer)
        self._closed = False
        runtime.on_channel(CHANNEL, self._on_channel, self.queries.local_state)
        runtime.on_direct(CHANNEL, self._on_direct)

    async def close(self) -> None:
        self._closed = True
        self._timer.cancel()
        self.handlers.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------ asking

    def ask(self, params: QueryParams) -> tuple[int, int, asyncio.Queue[AskedEffect]]:
        """Start a query: its id, its Lamport time and the queue where its acks,
        responses and final QueryDone arrive. Raises InvalidArgument or ResourceExhausted."""
        query_id, _, effects = self.queries.ask(params, self._runtime.now)
        lamport_time = self.queries.lamport_time_of(query_id) or 0
        # Every member answers at most twice: the queue never holds more than that.
        queue: asyncio.Queue[AskedEffect] = asyncio.Queue()
        self._asked[query_id] = queue
        broadcasts = [e.data for e in effects if isinstance(e, BroadcastQuery)]
        rest = [e for e in effects if not isinstance(e, BroadcastQuery)]
        try:
            # A query within its own limit may still not fit one gossip packet beside a
            # long node name and cluster label: refused here, before anyone handles it.
            for data in broadcasts:
                self._runtime.send(CHANNEL, data)
        except ControlPlaneError:
            self._asked.pop(query_id, None)
            self.queries.cancel(query_id)
            raise
        self._apply(rest)
        return query_id, lamport_time, queue

    def forget(self, query_id: int) -> None:
        """The caller went away: stop collecting for its query."""
        if self._asked.pop(query_id, None) is not None:
            self.queries.cancel(query_id)

    # --------------------------------------------------------- answering

    def watch(self, names: Iterable[str]) -> _Watcher:
        """A new watcher of received queries (all, or those named); ResourceExhausted
        beyond MAX_WATCHERS."""
        if len(self._watchers) >= MAX_WATCHERS:
            raise ResourceExhausted(f"{MAX_WATCHERS} clients watch queries on this agent already")
        watcher = _Watcher(frozenset(names))
        self._watchers.append(watcher)
        return watcher

    def unwatch(self, watcher: _Watcher) -> None:
        with contextlib.suppress(ValueError):
            self._watchers.remove(watcher)

    def respond(self, handle: int, payload: bytes) -> None:
        """Send the one response to received query ``handle``; raises
        FailedPrecondition (unknown, answered or finished) or InvalidArgument."""
        self._apply(self.queries.respond(handle, payload, self._runtime.now))

    # ----------------------------------------------------------- inputs

    def _on_channel(self, effect: ChannelDelivery | ChannelStateReceived) -> None:
        if self._closed:
            return
        if isinstance(effect, ChannelDelivery):
            self._apply(self.queries.receive_query(effect.payload, self._runtime.now))
        else:
            self.queries.merge_state(effect.state)

    def _on_direct(self, source: Address, payload: bytes) -> None:
        if not self._closed:
            self._apply(self.queries.receive_reply(payload, self._runtime.now))

    def _on_timer(self) -> None:
        if not self._closed:
            self._apply(self.queries.tick(self._runtime.now))

    # ---------------------------------------------------------- effects

    def _apply(self, effects: Iterable[QueryEffect]) -> None:
        for effect in effects:
            if isinstance(effect, BroadcastQuery):
                try:
                    self._runtime.send(CHANNEL, effect.data)
                except ControlPlaneError as error:  # a resend; the first send fitted
                    log.warning("a query could not be gossiped again: %s", error)
            elif isinstance(effect, SendReply):
                self._runtime.send_direct(CHANNEL, effect.address, effect.data)
            elif isinstance(effect, QueryReceived):
                self._deliver(effect)
            else:
                queue = self._asked.get(effect.query_id)
                if queue is not None:
                    queue.put_nowait(effect)
                if isinstance(effect, QueryDone):
                    self._asked.pop(effect.query_id, None)
        self._schedule()

    def _deliver(self, query: QueryReceived) -> None:
        for watcher in self._watchers:
            if watcher.names and query.name not in watcher.names:
                continue
            try:
                watcher.queue.put_nowait(query)
            except asyncio.QueueFull:
                watcher.dropped += 1
        if self.handlers.argv_for(query.name) is not None:
            task = asyncio.ensure_future(self._handle(query))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, query: QueryReceived) -> None:
        response = await self.handlers.run(query)
        if response is None or self._closed:
            return
        try:
            self.respond(query.handle, response)
        except ControlPlaneError as error:  # answered by a client first, or past its timeout
            log.debug("query %r: the handler's response was not sent: %s", query.name, error)

    def _schedule(self) -> None:
        if not self._closed:
            # The query layer is driven with the runtime's clock, which the loop's counts.
            self._timer.arm(asyncio.get_running_loop(), self.queries.next_deadline())
