"""The metrics listener: `GET /metrics` over HTTP/1.1, on the agent's own loop.

A scrape reads the agent's state, so it runs on the loop that changes it (a
thread, as `prometheus_client.start_http_server` uses, would read dictionaries
while the loop writes them). The listener speaks just enough HTTP for Prometheus
and curl, and treats every caller as a stranger: the request head is bounded
(8 KiB) and must arrive within 5 s, connections are bounded (16 at once, the
rest closed at once), every response closes its connection, and anything but
`GET` or `HEAD` of `/metrics` (or `/`) gets a short 404 or 405.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("controlplane.metrics")

MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT = 5.0
MAX_CONNECTIONS = 16
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _response(status: str, body: bytes, content_type: str, *, head_only: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + body


def answer(request_line: bytes, render: Callable[[], bytes]) -> bytes:
    """The whole response to one request line (pure: the tests drive it directly)."""
    parts = request_line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _response("400 Bad Request", b"bad request line\n", "text/plain")
    method, target, _ = parts
    path = target.partition("?")[0]
    if path not in ("/metrics", "/"):
        return _response("404 Not Found", b"metrics are at /metrics\n", "text/plain")
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"GET /metrics\n", "text/plain")
    return _response("200 OK", render(), CONTENT_TYPE, head_only=method == "HEAD")


class MetricsListener:
    """Serves `render()` at /metrics until closed."""

    def __init__(self, render: Callable[[], bytes]) -> None:
        self._render = render
        self._server: asyncio.Server | None = None
        self._open = 0
        self.refused = 0

    async def start(self, host: str, port: int) -> None:
        """Binds host:port; raises OSError if it cannot."""
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD_BYTES, reuse_address=True
        )

    @property
    def port(self) -> int:
        assert self._server is not None, "listener is not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            self.refused += 1
            writer.close()
            return
        self._open += 1
        try:
            response = await self._read_and_answer(reader)
            if response is not None:
                writer.write(response)
                await asyncio.wait_for(writer.drain(), HEAD_TIMEOUT)
        except (TimeoutError, OSError):
            pass
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), HEAD_TIMEOUT)

    async def _read_and_answer(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.IncompleteReadError:
            return None  # the caller went away
        except asyncio.LimitOverrunError:
            return _response("431 Request Header Fields Too Large", b"", "text/plain")
        except TimeoutError:
            return _response("408 Request Timeout", b"", "text/plain")
        request_line = head.split(b"\r\n", 1)[0]
        try:
            return answer(request_line, self._render)
        except Exception:
            log.exception("metrics: rendering failed")
            return _response("500 Internal Server Error", b"see the agent log\n", "text/plain")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
