"""The agent's own scheduling delay: how late the event loop runs a due callback.

A callback that holds the loop delays every RPC, probe answer and timer behind
it; at fleet size that is how an agent gets suspected by its peers. The probe
asks to be woken every ``interval`` and records how late each wake-up came:
the worst value and a percentile since start, and a warning in the log (at
most once per ``warn_every``) when a delay exceeds ``threshold``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("controlplane.agent")

# Each sample is a wake-up of an otherwise idle loop, and a wake-up costs about
# 0.2 ms of CPU on a small VM (epoll, the loop's bookkeeping): at 20 per second the
# probe alone was 0.35 % of a core, more than the gossip protocol. Two per second
# still catch every stall longer than 0.5 s and, in proportion, shorter ones (a
# 20 ms stall falls on a sample 4 % of the time); a benchmark that hunts 20 ms
# stalls asks for 0.05 (the agent's `loop_lag_interval`).
DEFAULT_INTERVAL = 0.5
# The fleet-scale bound: no callback may hold the loop longer than this.
DEFAULT_THRESHOLD = 0.020
DEFAULT_WARN_EVERY = 10.0
# Recent samples kept for percentiles (ten minutes at 0.05 s, 100 at the default).
SAMPLES_KEPT = 12_000


@dataclass(slots=True)
class LoopLagStats:
    """What the probe has seen; delays in seconds."""

    samples: int = 0
    max: float = 0.0
    over_threshold: int = 0
    recent: list[float] = field(default_factory=list)

    def record(self, delay: float, threshold: float) -> None:
        self.samples += 1
        self.max = max(self.max, delay)
        if delay > threshold:
            self.over_threshold += 1
        if len(self.recent) >= SAMPLES_KEPT:
            del self.recent[: SAMPLES_KEPT // 2]
        self.recent.append(delay)

    def percentile(self, fraction: float) -> float:
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def summary(self) -> str:
        return (
            f"loop lag: max {self.max * 1000:.1f} ms, p99 {self.percentile(0.99) * 1000:.1f} ms "
            f"over {self.samples} samples"
        )


class LoopLagProbe:
    """Measures the running loop's scheduling delay until stopped."""

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        threshold: float = DEFAULT_THRESHOLD,
        warn_every: float = DEFAULT_WARN_EVERY,
    ) -> None:
        self.interval = interval
        self.threshold = threshold
        self.warn_every = warn_every
        self.stats = LoopLagStats()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        self._next_warning = 0.0
        self._worst_unreported = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._arm(time.monotonic())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self.interval
        self._handle = self._loop.call_at(self._due, self._wake)

    def _wake(self) -> None:
        assert self._loop is not None
        # Not the loop's clock: uvloop's is read once per iteration, in whole
        # milliseconds, and would hide part of a delay.
        now = time.monotonic()
        delay = max(0.0, now - self._due)
        self.stats.record(delay, self.threshold)
        if delay > self.threshold:
            self._worst_unreported = max(self._worst_unreported, delay)
        if self._worst_unreported and now >= self._next_warning:
            log.warning(
                "loop lag %.1f ms exceeds %.0f ms",
                self._worst_unreported * 1000,
                self.threshold * 1000,
            )
            self._worst_unreported = 0.0
            self._next_warning = now + self.warn_every
        self._arm(now)
