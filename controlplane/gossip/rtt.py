"""Round-trip time of direct probes, smoothed as TCP smooths it (RFC 6298).

Sans-IO: the core feeds each sample (ack time minus ping time, both its own
``now``) and reads the smoothed mean and mean deviation, from which
``formulas.adaptive_probe_timeout`` makes the probe timeout.
"""

from __future__ import annotations

# RFC 6298 section 2: alpha = 1/8 for the mean, beta = 1/4 for the deviation.
_ALPHA = 0.125
_BETA = 0.25


class RttEstimator:
    """Smoothed round trip (``srtt``, None before the first sample) and its deviation."""

    __slots__ = ("rttvar", "samples", "srtt")

    def __init__(self) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.samples = 0

    def sample(self, rtt: float) -> None:
        rtt = max(rtt, 0.0)
        self.samples += 1
        if self.srtt is None:
            # RFC 6298 2.2: the first measurement sets the mean, half of it the deviation.
            self.srtt = rtt
            self.rttvar = rtt / 2.0
            return
        self.rttvar = (1.0 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
        self.srtt = (1.0 - _ALPHA) * self.srtt + _ALPHA * rtt
