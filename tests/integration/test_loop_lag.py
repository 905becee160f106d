"""The loop-lag probe on a real event loop: it sees a callback that holds the loop,
and says so once. Real time is what it measures, so this is not a unit test."""

from __future__ import annotations

import asyncio
import logging
import time

from controlplane.shell.looplag import LoopLagProbe


def hold_the_loop(seconds: float) -> None:
    # The behaviour under test is a callback that blocks; only a blocking call shows it.
    time.sleep(seconds)


async def test_a_blocking_callback_is_measured_and_warned_about_once(caplog):
    caplog.set_level(logging.WARNING, logger="controlplane.agent")
    probe = LoopLagProbe(interval=0.01, threshold=0.02, warn_every=60.0)
    probe.start()
    try:
        await asyncio.sleep(0.05)
        quiet_max = probe.stats.max
        asyncio.get_running_loop().call_soon(hold_the_loop, 0.08)
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().call_soon(hold_the_loop, 0.08)
        await asyncio.sleep(0.05)
    finally:
        probe.stop()
    assert probe.stats.max >= 0.05 > quiet_max
    assert probe.stats.over_threshold >= 2
    warnings = [r.getMessage() for r in caplog.records if "loop lag" in r.getMessage()]
    # Rate-limited: the second stall within warn_every is counted, not logged again.
    assert len(warnings) == 1
    assert "exceeds 20 ms" in warnings[0]


async def test_an_idle_loop_stays_under_the_threshold():
    probe = LoopLagProbe(interval=0.005, threshold=0.5)
    probe.start()
    await asyncio.sleep(0.1)
    probe.stop()
    samples = probe.stats.samples
    await asyncio.sleep(0.02)
    assert probe.stats.samples == samples >= 5
    assert probe.stats.over_threshold == 0
