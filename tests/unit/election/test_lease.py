"""Lease arithmetic and the configuration checks built on it."""

from __future__ import annotations

import pytest

from controlplane.election import (
    ElectionConfig,
    ElectionConfigError,
    failover_bound,
    follower_expiry,
    holder_expiry,
    is_safe,
    min_safe_skew,
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
    with pytest.raises(ElectionConfigError):
        ElectionConfig(**kwargs)  # type: ignore[arg-type]


def test_zero_skew_is_unsafe_even_without_drift() -> None:
    # With zero delay the holder and a voter would stop at the same instant:
    # "strictly before" needs a positive margin.
    assert not is_safe(10.0, 0.0, 0.0)
    assert ElectionConfig(max_clock_skew=0.01, max_drift=0.0).follower_lease == 10.01


def test_failover_bound_sums_its_parts() -> None:
    assert failover_bound(10.0, 1.0, 1.0, 2.0) == 15.0
