"""The loop-lag probe: it sees a callback that holds the loop, and says so once."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from controlplane.transport.looplag import LoopLagProbe, LoopLagStats


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


def test_summary_and_percentiles():
    stats = LoopLagStats()
    for delay in [0.001] * 98 + [0.010, 0.030]:
        stats.record(delay, threshold=0.02)
    assert stats.max == pytest.approx(0.030)
    assert stats.percentile(0.5) == pytest.approx(0.001)
    assert stats.percentile(0.99) == pytest.approx(0.030)
    assert stats.summary() == "loop lag: max 30.0 ms, p99 30.0 ms over 100 samples"
