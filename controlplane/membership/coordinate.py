"""Vivaldi network coordinates (Serf's ``coordinate`` package): pure and sans-IO.

Owns the :class:`Coordinate` value (a point in a Euclidean space plus a height
and an adjustment, all in seconds), the checks every coordinate from the wire
passes before it is used, and :class:`VivaldiClient`, which moves this
member's coordinate with each round-trip sample to a peer (Serf's
``coordinate.Client``: latency filter, Vivaldi spring update, adjustment
window, gravity toward the origin).

Formulas and defaults are Serf's (``coordinate/config.go``, ``client.go``,
``coordinate.go``); its unit tests are the table tests of this module.
:class:`NetworkCoordinates` is the layer's use of it: the coordinate sent in
acks and the cache of the peers' coordinates (serf.go, ping_delegate.go).
Randomness (a direction for two coincident points) comes only from the
``random.Random`` passed in.
"""

from __future__ import annotations

import math
import random
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controlplane.membership.config import InvalidConfig
from controlplane.wire.v1 import gossip_pb2 as pb

# coordinate.go zeroThreshold: below this two points are coincident, an RTT is zero.
ZERO_THRESHOLD = 1.0e-6
# client.go Update maxRTT: a sample above 10 s is absurd and never applied.
MAX_RTT = 10.0
# Beyond Serf: the largest coordinate component, height or adjustment (seconds)
# accepted from the wire. Gravity keeps real coordinates within a few RTTs of the
# origin; a value this far out can only come from a broken or hostile peer, and
# would otherwise drag this member's coordinate with it.
MAX_COMPONENT = 100.0


@dataclass(frozen=True, slots=True)
class CoordinateConfig:
    """Tunables of the Vivaldi client; every default is Serf's ``DefaultConfig``."""

    # config.go Dimensionality 8: the Euclidean dimensions of a coordinate.
    dimensionality: int = 8
    # config.go VivaldiErrorMax 1.5: the error a new coordinate starts with, and the cap.
    vivaldi_error_max: float = 1.5
    # config.go VivaldiCE 0.25: how fast the error estimate follows new samples.
    vivaldi_ce: float = 0.25
    # config.go VivaldiCC 0.25: how far one sample moves the coordinate.
    vivaldi_cc: float = 0.25
    # config.go AdjustmentWindowSize 20: samples averaged into the adjustment term
    # (0 turns the adjustment off).
    adjustment_window_size: int = 20
    # config.go HeightMin 10.0e-6: the least height, in seconds.
    height_min: float = 10.0e-6
    # config.go LatencyFilterSize 3: samples per peer whose median Vivaldi sees.
    latency_filter_size: int = 3
    # config.go GravityRho 150.0: the pull back to the origin (larger is weaker).
    gravity_rho: float = 150.0
    # Beyond Serf, whose filter map grows with every peer ever sampled: the most peers
    # whose latency samples are kept; the least recently sampled one is forgotten.
    max_peers: int = 10_000

    def __post_init__(self) -> None:
        if not 1 <= self.dimensionality <= 64:
            # client.go NewClient: "dimensionality must be >0".
            raise InvalidConfig.for_field(
                "dimensionality", f"must be 1 to 64, got {self.dimensionality}"
            )
        positive = {
            "vivaldi_error_max": self.vivaldi_error_max,
            "vivaldi_ce": self.vivaldi_ce,
            "vivaldi_cc": self.vivaldi_cc,
            "gravity_rho": self.gravity_rho,
            "latency_filter_size": self.latency_filter_size,
            "max_peers": self.max_peers,
        }
        for name, value in positive.items():
            if not value > 0:
                raise InvalidConfig.for_field(name, f"must be positive, got {value}")
        if self.adjustment_window_size < 0 or self.height_min < 0:
            raise InvalidConfig.for_field(
                "adjustment_window_size" if self.adjustment_window_size < 0 else "height_min",
                "must not be negative",
            )


@dataclass(frozen=True, slots=True)
class Coordinate:
    """A network coordinate: ``vec`` (seconds per axis), ``error`` (a confidence,
    unitless), ``adjustment`` and ``height`` (seconds)."""

    vec: tuple[float, ...]
    error: float
    adjustment: float = 0.0
    height: float = 0.0

    @classmethod
    def origin(cls, config: CoordinateConfig) -> Coordinate:
        """coordinate.go NewCoordinate: at the origin, with the largest error."""
        return cls((0.0,) * config.dimensionality, config.vivaldi_error_max, 0.0, config.height_min)

    def is_valid(self) -> bool:
        """coordinate.go IsValid: no component is NaN or infinite."""
        return all(map(math.isfinite, self.vec)) and all(
            map(math.isfinite, (self.error, self.adjustment, self.height))
        )

    def is_compatible_with(self, other: Coordinate) -> bool:
        return len(self.vec) == len(other.vec)

    def raw_distance_to(self, other: Coordinate) -> float:
        """coordinate.go rawDistanceTo: Euclidean distance plus both heights, seconds."""
        # math.dist is magnitude(diff(...)) in C: near ordering measures every server.
        return math.dist(self.vec, other.vec) + self.height + other.height

    def distance_to(self, other: Coordinate) -> float:
        """coordinate.go DistanceTo: the estimated RTT in seconds. The adjustments count
        only while they keep the distance positive."""
        if not self.is_compatible_with(other):
            raise ValueError("coordinate dimensionality does not match")
        dist = self.raw_distance_to(other)
        adjusted = dist + self.adjustment + other.adjustment
        return adjusted if adjusted > 0.0 else dist

    def apply_force(
        self, config: CoordinateConfig, force: float, other: Coordinate, rng: random.Random
    ) -> Coordinate:
        """coordinate.go ApplyForce: move ``force`` seconds away from ``other`` (toward
        it when negative); the height grows or shrinks in proportion."""
        if not self.is_compatible_with(other):
            raise ValueError("coordinate dimensionality does not match")
        unit, mag = unit_vector_at(self.vec, other.vec, rng)
        vec = tuple(a + u * force for a, u in zip(self.vec, unit, strict=True))
        height = self.height
        if mag > ZERO_THRESHOLD:
            height = max((height + other.height) * force / mag + height, config.height_min)
        return Coordinate(vec, self.error, self.adjustment, height)


def diff(a: Sequence[float], b: Sequence[float]) -> tuple[float, ...]:
    return tuple(x - y for x, y in zip(a, b, strict=True))


def magnitude(vec: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in vec))


def unit_vector_at(
    a: Sequence[float], b: Sequence[float], rng: random.Random
) -> tuple[tuple[float, ...], float]:
    """coordinate.go unitVectorAt: the unit vector from ``b`` to ``a`` and the distance.

    Coincident points get a random direction (and distance 0) rather than a division
    by zero; should the random vector be tiny too, the first axis."""
    delta = diff(a, b)
    mag = magnitude(delta)
    if mag > ZERO_THRESHOLD:
        return tuple(x / mag for x in delta), mag
    delta = tuple(rng.random() - 0.5 for _ in delta)
    mag = magnitude(delta)
    if mag > ZERO_THRESHOLD:
        return tuple(x / mag for x in delta), 0.0
    return (1.0,) + (0.0,) * (len(delta) - 1), 0.0


def check_coordinate(coordinate: Coordinate, config: CoordinateConfig) -> str | None:
    """Why a coordinate from the wire cannot be used (None if it can): Serf's
    checkCoordinate (same dimensionality, finite) plus bounds on every component."""
    if len(coordinate.vec) != config.dimensionality:
        return (
            f"coordinate has {len(coordinate.vec)} dimensions, this cluster uses "
            f"{config.dimensionality}"
        )
    if not coordinate.is_valid():
        return "coordinate is invalid (NaN or infinite component)"
    if magnitude(coordinate.vec) > MAX_COMPONENT:
        return f"coordinate is more than {MAX_COMPONENT:g} s from the origin"
    if not 0.0 <= coordinate.error <= config.vivaldi_error_max:
        return f"coordinate error must be 0 to {config.vivaldi_error_max:g}"
    if not 0.0 <= coordinate.height <= MAX_COMPONENT:
        return f"coordinate height must be 0 to {MAX_COMPONENT:g} s"
    if abs(coordinate.adjustment) > MAX_COMPONENT:
        return f"coordinate adjustment must be within +-{MAX_COMPONENT:g} s"
    return None


class RejectedSample(ValueError):
    """A peer's coordinate or a round-trip sample that the client refused to apply."""


@dataclass(slots=True)
class VivaldiStats:
    """Counters of the Vivaldi client (Serf's ClientStats plus its rejection metric)."""

    updates: int = 0
    # client.go ClientStats.Resets: the coordinate became invalid and restarted at the origin.
    resets: int = 0
    # Samples refused, by reason: "coordinate" or "rtt" (serf.coordinate.rejected).
    rejected: Counter[str] = field(default_factory=Counter)

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1


class VivaldiClient:
    """This member's coordinate and its update from RTT samples (Serf's ``Client``)."""

    def __init__(self, config: CoordinateConfig, rng: random.Random) -> None:
        self.config = config
        self.stats = VivaldiStats()
        self._rng = rng
        self._coord = Coordinate.origin(config)
        self._origin = Coordinate.origin(config)
        self._adjustment_index = 0
        self._adjustment_samples = [0.0] * config.adjustment_window_size
        # Per peer, its last latency_filter_size samples; least recently sampled first.
        self._filters: OrderedDict[str, list[float]] = OrderedDict()

    @property
    def coordinate(self) -> Coordinate:
        return self._coord

    def set_coordinate(self, coordinate: Coordinate) -> None:
        """client.go SetCoordinate: only a coordinate that passes the checks."""
        reason = check_coordinate(coordinate, self.config)
        if reason is not None:
            raise RejectedSample(reason)
        self._coord = coordinate

    def forget(self, node: str) -> None:
        """client.go ForgetNode: drop a departed peer's latency samples."""
        self._filters.pop(node, None)

    @property
    def peers_sampled(self) -> int:
        return len(self._filters)

    def distance_to(self, other: Coordinate) -> float:
        return self._coord.distance_to(other)

    def update(self, node: str, other: Coordinate, rtt: float) -> Coordinate:
        """client.go Update: one RTT sample (seconds) to ``node`` whose coordinate is
        ``other``. A bad coordinate or an RTT outside (0, 10 s] raises
        :class:`RejectedSample`, counted, and changes nothing."""
        reason = check_coordinate(other, self.config)
        if reason is not None:
            self.stats.reject("coordinate")
            raise RejectedSample(reason)
        if not 0.0 < rtt <= MAX_RTT:
            # Serf accepts 0 (and counts it); a zero from a clock that did not move
            # carries no information, so it is refused here like the absurd ones.
            self.stats.reject("rtt")
            raise RejectedSample(f"round trip time {rtt!r} s is not in (0, {MAX_RTT:g}] s")
        rtt = self.latency_filter(node, rtt)
        self._update_vivaldi(other, rtt)
        self._update_adjustment(other, rtt)
        self._update_gravity()
        if not self._coord.is_valid():
            self.stats.resets += 1
            self._coord = Coordinate.origin(self.config)
        self.stats.updates += 1
        return self._coord

    def latency_filter(self, node: str, rtt: float) -> float:
        """client.go latencyFilter: the median of the peer's last few samples."""
        samples = self._filters.pop(node, None)
        if samples is None:
            samples = []
            while len(self._filters) >= self.config.max_peers:
                self._filters.popitem(last=False)
        samples.append(rtt)
        if len(samples) > self.config.latency_filter_size:
            del samples[0]
        self._filters[node] = samples
        ordered = sorted(samples)
        return ordered[len(ordered) // 2]

    def _update_vivaldi(self, other: Coordinate, rtt: float) -> None:
        config = self.config
        coord = self._coord
        dist = coord.distance_to(other)
        rtt = max(rtt, ZERO_THRESHOLD)
        wrongness = abs(dist - rtt) / rtt
        total_error = max(coord.error + other.error, ZERO_THRESHOLD)
        weight = coord.error / total_error
        error = config.vivaldi_ce * weight * wrongness + coord.error * (
            1.0 - config.vivaldi_ce * weight
        )
        error = min(error, config.vivaldi_error_max)
        force = config.vivaldi_cc * weight * (rtt - dist)
        moved = Coordinate(coord.vec, error, coord.adjustment, coord.height)
        self._coord = moved.apply_force(config, force, other, self._rng)

    def _update_adjustment(self, other: Coordinate, rtt: float) -> None:
        window = self.config.adjustment_window_size
        if window == 0:
            return
        self._adjustment_samples[self._adjustment_index] = rtt - self._coord.raw_distance_to(other)
        self._adjustment_index = (self._adjustment_index + 1) % window
        coord = self._coord
        adjustment = sum(self._adjustment_samples) / (2.0 * window)
        self._coord = Coordinate(coord.vec, coord.error, adjustment, coord.height)

    def _update_gravity(self) -> None:
        dist = self._origin.distance_to(self._coord)
        force = -1.0 * (dist / self.config.gravity_rho) ** 2
        self._coord = self._coord.apply_force(self.config, force, self._origin, self._rng)


def to_wire(coordinate: Coordinate) -> pb.Coordinate:
    return pb.Coordinate(
        vec=coordinate.vec,
        error=coordinate.error,
        adjustment=coordinate.adjustment,
        height=coordinate.height,
    )


class CoordinateMessage(Protocol):
    """The gossip wire's ``Coordinate`` or the public API's: the same four fields."""

    @property
    def vec(self) -> Iterable[float]: ...

    @property
    def error(self) -> float: ...

    @property
    def adjustment(self) -> float: ...

    @property
    def height(self) -> float: ...


def from_wire(message: CoordinateMessage) -> Coordinate:
    """Unchecked: pass the result through :func:`check_coordinate` before any use."""
    return Coordinate(tuple(message.vec), message.error, message.adjustment, message.height)


class NetworkCoordinates:
    """This member's coordinate and the coordinates its peers sent (serf.go coordClient
    and coordCache, with ping_delegate.go's handling of acks).

    Like Serf, a peer's coordinate is learned from the ack of a direct probe and
    cached; every member probes every other one in turn, so within one probe round
    each member has a fresh coordinate for all the others and can estimate the RTT
    between any two of them. The cache holds at most ``config.max_peers`` entries,
    and the layer forgets a member when it erases it (Serf's handleReap).
    """

    def __init__(self, name: str, config: CoordinateConfig, rng: random.Random) -> None:
        self.name = name
        self.client = VivaldiClient(config, rng)
        self._cache: OrderedDict[str, Coordinate] = OrderedDict()
        self._wire: pb.Coordinate | None = None

    @property
    def stats(self) -> VivaldiStats:
        return self.client.stats

    def ack_coordinate(self) -> pb.Coordinate:
        """ping_delegate.go AckPayload: our coordinate, encoded once per change."""
        if self._wire is None:
            self._wire = to_wire(self.client.coordinate)
        return self._wire

    def ping_complete(self, node: str, rtt: float, message: pb.Coordinate) -> bool:
        """ping_delegate.go NotifyPingComplete: one sample; False when rejected (counted
        in ``stats.rejected``). Only the update's outcome is kept, never a bad value."""
        if node == self.name:
            return False
        peer = from_wire(message)
        try:
            self.client.update(node, peer, rtt)
        except RejectedSample:
            return False
        self._wire = None
        self._cache.pop(node, None)
        while len(self._cache) >= self.client.config.max_peers:
            self._cache.popitem(last=False)
        self._cache[node] = peer
        return True

    def get(self, node: str) -> Coordinate | None:
        """serf.go GetCachedCoordinate: ours for our own name."""
        if node == self.name:
            return self.client.coordinate
        return self._cache.get(node)

    def forget(self, node: str) -> None:
        self._cache.pop(node, None)
        self.client.forget(node)
