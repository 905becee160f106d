"""Lease arithmetic and the configuration checks built on it."""

from __future__ import annotations

import pytest

from controlplane.configerror import ConfigError
from controlplane.election import (
    ElectionConfig,
    drift_factor,
    failover_bound,
    follower_expiry,
    holder_expiry,
    is_safe,
    min_safe_skew,
    send_time_bound,
    view_expiry,
)


def test_holder_counts_lease_from_send_followers_add_skew_from_receipt() -> None:
    assert holder_expiry(100.0, 10.0) == 110.0
    assert follower_expiry(100.5, 10.0, 1.0) == 111.5


@pytest.mark.parametrize("drift", [0.0, 0.001, 0.01, 0.04])
def test_holder_belief_ends_first_in_real_time_at_worst_drift(drift: float) -> None:
    lease, skew = 10.0, 1.0
    assert is_safe(lease, skew, drift)
    # Worst case: the holder's clock runs slow, the voter's fast, zero delay.
    holder_real = lease / (1 - drift)
    voter_real = (lease + skew) / (1 + drift)
    assert holder_real < voter_real


def test_unsafe_when_skew_does_not_cover_drift() -> None:
    assert not is_safe(10.0, 0.0, 0.01)
    assert not is_safe(10.0, 0.19, 0.01)  # needs 10 * 0.02 / 0.99 = 0.202
    assert min_safe_skew(10.0, 0.01) == pytest.approx(0.20202, rel=1e-4)
    assert is_safe(10.0, 0.21, 0.01)


def test_config_defaults_and_majority() -> None:
    cfg = ElectionConfig()
    assert (cfg.lease_time, cfg.beat_interval, cfg.max_clock_skew) == (10.0, 1.0, 1.0)
    assert cfg.follower_lease == 11.0
    assert cfg.majority == 0
    assert ElectionConfig(quorum=5).majority == 3
    assert ElectionConfig(quorum=4).majority == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lease_time": 0.0},
        {"beat_interval": -1.0},
        {"beat_interval": 6.0},
        {"max_clock_skew": -0.1},
        {"max_clock_skew": 0.0},
        {"max_drift": 0.5},
        {"quorum": -1},
        {"lease_time": float("nan")},
    ],
)
def test_config_rejects_unsafe_or_invalid(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ElectionConfig(**kwargs)  # type: ignore[arg-type]


def test_zero_skew_is_unsafe_even_without_drift() -> None:
    # With zero delay the holder and a voter would stop at the same instant:
    # "strictly before" needs a positive margin.
    assert not is_safe(10.0, 0.0, 0.0)
    assert ElectionConfig(max_clock_skew=0.01, max_drift=0.0).follower_lease == 10.01


def test_failover_bound_sums_its_parts() -> None:
    assert failover_bound(10.0, 1.0, 1.0, 2.0) == 15.0


@pytest.mark.parametrize("drift", [0.0, 0.01, 0.04])
@pytest.mark.parametrize("delay", [0.0, 0.05, 30.0])
@pytest.mark.parametrize(("receiver_rate", "holder_rate"), [(-1, 1), (1, -1), (1, 1), (-1, -1)])
def test_a_view_never_outlasts_the_lease_whatever_the_delay_and_drift(
    drift: float, delay: float, receiver_rate: int, holder_rate: int
) -> None:
    """Real time: the receiver sends its stamp at 0; the holder gets it after ``delay``,
    holds it ``held`` seconds of its clock, then sends a renewal with ``remaining``
    seconds of lease left; the receiver's view must end by the lease's end."""
    r_rate, h_rate = 1 + receiver_rate * drift, 1 + holder_rate * drift
    held, remaining = 0.4, 9.0
    send_real = delay + held / h_rate
    lease_end_real = send_real + remaining / h_rate
    receiver_offset = 1000.0  # its clock reads offset + rate * real time
    stamp = receiver_offset
    sent = send_time_bound(stamp, held, drift)
    end_local = view_expiry(sent, remaining, drift)
    end_real = (end_local - receiver_offset) / r_rate
    assert end_real <= lease_end_real + 1e-9
    # And it is short of the lease only by the delay and the drift allowance.
    assert lease_end_real - end_real <= delay + (held + remaining) * 4 * drift + 1e-9


def test_drift_factor() -> None:
    assert drift_factor(0.0) == 1.0
    assert drift_factor(0.01) == pytest.approx(0.99 / 1.01)
