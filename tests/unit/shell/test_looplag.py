"""Loop-lag statistics: maxima, percentiles and the summary line (pure)."""

from __future__ import annotations

import pytest

from controlplane.shell.looplag import LoopLagStats


def test_summary_and_percentiles():
    stats = LoopLagStats()
    for delay in [0.001] * 98 + [0.010, 0.030]:
        stats.record(delay, threshold=0.02)
    assert stats.max == pytest.approx(0.030)
    assert stats.percentile(0.5) == pytest.approx(0.001)
    assert stats.percentile(0.99) == pytest.approx(0.030)
    assert stats.summary() == "loop lag: max 30.0 ms, p99 30.0 ms over 100 samples"
