"""Outlier ejection: taking a server out of rotation after consecutive failures.

This module owns the ejection policy (:class:`EjectionPolicy`, Envoy's
consecutive-errors outlier detection with Envoy's defaults) and the per-server
failure bookkeeping (:class:`ServerHealth`). It decides *whether* and *for how
long* a server is ejected; the pool decides what ejection means for ordering.

Time is never read here: every method that needs it takes ``now`` (seconds on a
monotonic clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controlplane.pool.errors import InvalidConfigError, InvalidTimeError

__all__ = ["EjectionPolicy", "ServerHealth", "check_now"]


def check_now(now: float) -> float:
    """Validate a monotonic timestamp; NaN or infinity would break every comparison."""
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        raise InvalidTimeError("now", f"must be a finite number of seconds, got {now!r}")
    return float(now)


def _check_positive_seconds(field: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidConfigError(field, f"must be a finite number of seconds > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class EjectionPolicy:
    """When to eject a server and for how long. Defaults are Envoy's.

    Attributes:
        consecutive_failures: failures in a row that eject a server. Envoy
            ``outlier_detection.consecutive_5xx`` defaults to 5. ``None`` turns
            ejection off (Consul's and Nomad's behaviour: rotation only).
        base_ejection_time: seconds of the first ejection. Envoy
            ``base_ejection_time`` defaults to 30 s; each further ejection lasts
            ``base * multiplier`` where the multiplier counts ejections.
        max_ejection_time: cap on one ejection. Envoy ``max_ejection_time``
            defaults to 300 s.
        max_ejection_percent: at most this share of the pool's servers is ejected
            at once. Envoy ``max_ejection_percent`` defaults to 10 %. Checked after
            the ejection, as current Envoy does: ejecting must not take the
            ejected share above the limit.
        always_eject_one: allow one ejection even when the percentage would round
            down to zero (pools of fewer than 10 servers). This was Envoy's
            documented behaviour ("will eject at least one host regardless of the
            value") and is now its ``always_eject_one_host`` switch; it is on by
            default here because control-plane pools usually have 3 to 7 servers,
            where a strict 10 % would disable ejection entirely.
        multiplier_decay_interval: while a server stays in service after an
            ejection, its multiplier drops by one per this many seconds. Envoy
            decrements the multiplier once per detection ``interval``, which
            defaults to 10 s.
    """

    consecutive_failures: int | None = 5
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 10
    always_eject_one: bool = True
    multiplier_decay_interval: float = 10.0

    def __post_init__(self) -> None:
        threshold = self.consecutive_failures
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1
        ):
            raise InvalidConfigError(
                "consecutive_failures", f"must be an integer >= 1 or None, got {threshold!r}"
            )
        _check_positive_seconds("base_ejection_time", self.base_ejection_time)
        _check_positive_seconds("max_ejection_time", self.max_ejection_time)
        _check_positive_seconds("multiplier_decay_interval", self.multiplier_decay_interval)
        if self.max_ejection_time < self.base_ejection_time:
            raise InvalidConfigError(
                "max_ejection_time",
                f"must be >= base_ejection_time ({self.base_ejection_time!r}), "
                f"got {self.max_ejection_time!r}",
            )
        percent = self.max_ejection_percent
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise InvalidConfigError(
                "max_ejection_percent", f"must be an integer in 0..100, got {percent!r}"
            )
        if not isinstance(self.always_eject_one, bool):
            raise InvalidConfigError(
                "always_eject_one", f"must be a bool, got {self.always_eject_one!r}"
            )

    @property
    def enabled(self) -> bool:
        """Whether ejection can happen at all."""
        return self.consecutive_failures is not None

    def ejection_duration(self, multiplier: int) -> float:
        """Seconds an ejection lasts for the given multiplier (1 for the first)."""
        return min(self.base_ejection_time * multiplier, self.max_ejection_time)

    def may_eject(self, currently_ejected: int, total_servers: int) -> bool:
        """Whether one more server may be ejected right now.

        ``currently_ejected`` counts servers still inside their ejection time;
        ``total_servers`` counts every server the pool knows, ejected or not.
        """
        if total_servers <= 0:
            return False
        if self.always_eject_one and currently_ejected == 0:
            return True
        return (currently_ejected + 1) * 100 <= self.max_ejection_percent * total_servers


@dataclass(slots=True)
class ServerHealth:
    """Mutable failure bookkeeping for one server (private to the pool).

    Attributes:
        consecutive_failures: failures reported since the last success or ejection.
        ejection_multiplier: how many times the server has been ejected, less the
            decay earned while it stayed in service afterwards.
        ejected_until: the ``now`` at which the last ejection ends, or ``None`` if
            never ejected. The server is ejected while ``now < ejected_until``.
    """

    consecutive_failures: int = 0
    ejection_multiplier: int = 0
    ejected_until: float | None = None

    def is_ejected(self, now: float) -> bool:
        return self.ejected_until is not None and now < self.ejected_until

    def record_success(self) -> None:
        self.consecutive_failures = 0

    def record_failure(self) -> int:
        self.consecutive_failures += 1
        return self.consecutive_failures

    def eject(self, now: float, policy: EjectionPolicy) -> float:
        """Eject from ``now``; returns the time the ejection ends."""
        if self.ejected_until is not None and now >= self.ejected_until:
            healthy_seconds = now - self.ejected_until
            decay = math.floor(healthy_seconds / policy.multiplier_decay_interval)
            self.ejection_multiplier = max(0, self.ejection_multiplier - decay)
        self.ejection_multiplier += 1
        self.ejected_until = now + policy.ejection_duration(self.ejection_multiplier)
        # Envoy starts counting afresh after an ejection: a returning server needs
        # a full run of consecutive failures to be ejected again.
        self.consecutive_failures = 0
        return self.ejected_until
