"""Gossip refused for a key or label mismatch, said in the log at a bounded rate.

Two members with different `--encrypt` keys or `--cluster-label`s cannot talk:
each drops the other's datagrams and refuses its state exchanges, and the gossip
core only counts the drops (`GossipStats.dropped`). Counted silently, a
misconfigured member looks like a network problem. `RefusalReport` turns the
counts into log lines that name the source and the likely mistake, e.g.

    3 gossip packets from 127.0.0.1:7947 failed to decrypt: is --encrypt the same key
    on every member?

The first refusal of a (kind, reason, source) is reported at once, later ones are
counted and reported together at most once per `interval` seconds. It is pure:
the shell passes `now` and logs the lines it gets back.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Seconds between two lines about the same source and reason.
REPORT_INTERVAL = 30.0
# Distinct (kind, reason, source) tallies kept; the oldest is forgotten first.
MAX_SOURCES = 128

# Drop reasons of the gossip core (codec.FrameError) that mean "another key or label",
# as seen by the member that refused the frame.
MISMATCH_REASONS: Mapping[str, str] = {
    "decrypt": "failed to decrypt: is --encrypt the same key on every member?",
    "plaintext": (
        "{were} not encrypted: this agent has --encrypt, so every member needs the same key"
    ),
    "encrypted_without_keyring": (
        "{were} encrypted, but this agent has no --encrypt key: give it the cluster's key"
    ),
    "label": "had another cluster label: is --cluster-label the same on every member?",
}

# The same reasons, as the member whose exchange was refused explains them.
REFUSED_BY_PEER: Mapping[str, str] = {
    "decrypt": "it cannot decrypt them: is --encrypt the same key on every member?",
    "plaintext": "it requires encrypted gossip: give this agent the cluster's --encrypt key",
    "encrypted_without_keyring": (
        "it has no --encrypt key and this agent encrypts: is --encrypt the same on every member?"
    ),
    "label": "it has another cluster label: is --cluster-label the same on every member?",
}

# What was refused, singular and plural.
PACKETS = ("gossip packet", "gossip packets")
EXCHANGES = ("state exchange (push-pull)", "state exchanges (push-pull)")


def _counted(count: int, noun: tuple[str, str]) -> str:
    return f"{count} {noun[0] if count == 1 else noun[1]}"


def mismatch_counts(dropped: Counter[str]) -> tuple[int, ...]:
    """The core's drop counters of the mismatch reasons, in MISMATCH_REASONS order."""
    return tuple(dropped[reason] for reason in MISMATCH_REASONS)


def changed_reason(before: tuple[int, ...], after: tuple[int, ...]) -> str | None:
    """The mismatch reason whose counter moved between two `mismatch_counts`."""
    for reason, old, new in zip(MISMATCH_REASONS, before, after, strict=True):
        if new != old:
            return reason
    return None


def refusal_reason(details: str) -> str:
    """The core's reason at the end of a PushPull refusal's status details."""
    return details.rsplit(":", 1)[-1].strip()


@dataclass(slots=True)
class _Tally:
    unreported: int
    reported_at: float


class RefusalReport:
    """Counts refusals by kind, reason and source; returns the log lines that are due."""

    def __init__(self, interval: float = REPORT_INTERVAL, max_sources: int = MAX_SOURCES) -> None:
        self.interval = interval
        self.max_sources = max_sources
        self._tallies: OrderedDict[tuple[str, str, str], _Tally] = OrderedDict()

    def refused(self, kind: tuple[str, str], reason: str, source: str, now: float) -> str | None:
        """Records that this agent refused `kind` (PACKETS or EXCHANGES) from `source`
        for `reason`; returns a line to log, or None while rate limited or when the
        reason is not a key or label mismatch."""
        text = MISMATCH_REASONS.get(reason)
        if text is None:
            return None
        return self._count(
            (kind[1], reason, source),
            now,
            lambda n: (
                f"{_counted(n, kind)} from {source} "
                + text.format(were="was" if n == 1 else "were")
            ),
        )

    def refused_by_peer(self, reason: str, peer: str, now: float) -> str | None:
        """Records that `peer` refused a state exchange of this agent for `reason`
        (the peer's own words when it is not a known mismatch); returns a line or None."""
        text = REFUSED_BY_PEER.get(reason, f"it answered: {reason}")
        return self._count(
            ("refused-by", reason, peer),
            now,
            lambda n: f"{peer} refused {_counted(n, EXCHANGES)} of this agent: {text}",
        )

    def _count(
        self, key: tuple[str, str, str], now: float, line: Callable[[int], str]
    ) -> str | None:
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= self.max_sources:
                self._tallies.popitem(last=False)
            self._tallies[key] = _Tally(0, now)
            return line(1)
        tally.unreported += 1
        if now - tally.reported_at < self.interval:
            return None
        count, tally.unreported, tally.reported_at = tally.unreported, 0, now
        return line(count)
