"""The agent's event loop: uvloop where it is installed, asyncio's own otherwise.

Most of an agent's CPU per RPC is grpc.aio's machinery and the event loop under
it, not the agent's handlers (docs/benchmarks.md). uvloop runs the same asyncio
API on libuv; under it the agent spent about 360 µs of server CPU per FindServer
with 32 callers against 420 µs on asyncio's loop, and answered at the rate of a
bare grpc.aio server answering empty responses (bench/rpc.py).

uvloop reads names of `ssl` as it loads, and the agent loads without Python's
OpenSSL bindings (shell/nossl.py); it is given a stand-in `ssl`, so that it adds
about 2 MB to an idle agent rather than 8. Its clock (`loop.time()`) counts whole
milliseconds and is read once per loop iteration, so the agent takes the times it
measures with (round trips, loop lag) from `time.monotonic()`, the clock asyncio's
own loop reads, and only schedules on the loop's.

`event_loop` (docs/configuration.md): `auto` runs on uvloop when it can be loaded
and on asyncio's loop otherwise (saying why, in one line); `uvloop` makes a missing
or broken uvloop a configuration error; `asyncio` never loads it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.config import EVENT_LOOPS
from controlplane.configerror import ConfigError
from controlplane.shell.nossl import import_beside_ssl_stand_in

__all__ = ["EVENT_LOOPS", "EventLoopChoice", "choose_event_loop", "describe_running_loop"]

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


@dataclass(frozen=True, slots=True)
class EventLoopChoice:
    """The loop to run the agent on: `factory` None is asyncio's own."""

    factory: LoopFactory | None
    fallback: str | None = None
    """Under `auto`: why uvloop is not used, in one line (None when it is, or when
    `asyncio` was asked for)."""
    broken: bool = False
    """The fallback is a fault (uvloop is installed but failed to load), not a
    choice of the installation: worth a warning rather than a note."""


def choose_event_loop(setting: str) -> EventLoopChoice:
    """The loop `setting` (one of EVENT_LOOPS) asks for; ConfigError when it asks
    for uvloop and uvloop cannot be loaded."""
    if setting == "asyncio":
        return EventLoopChoice(None)
    try:
        uvloop = import_beside_ssl_stand_in("uvloop")
        factory: LoopFactory = uvloop.new_event_loop
    except ModuleNotFoundError as error:
        broken = error.name != "uvloop"
        reason = f"uvloop cannot be loaded: {error}" if broken else "uvloop is not installed"
    except Exception as error:  # a uvloop this module does not know: any failure to load
        broken, reason = True, f"uvloop cannot be loaded: {type(error).__name__}: {error}"
    else:
        return EventLoopChoice(factory)
    if setting == "uvloop":
        raise ConfigError(f"event_loop uvloop: {reason} (event_loop auto or asyncio runs without)")
    return EventLoopChoice(None, f"{reason}; running on asyncio's event loop", broken)


def describe_running_loop() -> str:
    """`uvloop 0.23.0` or `asyncio`: the loop the caller runs on, for the log."""
    loop_type = type(asyncio.get_running_loop())
    package = loop_type.__module__.partition(".")[0]
    if package == "uvloop":
        return f"uvloop {getattr(sys.modules['uvloop'], '__version__', '?')}"
    if package == "asyncio":
        return "asyncio"
    return f"{loop_type.__module__}.{loop_type.__qualname__}"
