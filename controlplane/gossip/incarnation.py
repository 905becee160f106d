"""Incarnation numbers from the network: a circle, and a bounded step on it.

memberlist compares incarnations as plain integers and clamps nothing, so one
forged ``Dead{incarnation=2**32-1}`` about a live member wins for good: its
refutation cannot go higher, and an equal incarnation never wins. Here:

* Incarnations live on a circle of ``2**32`` (the wire's uint32) and are
  compared by serial-number arithmetic (RFC 1982): ``a`` is newer than ``b`` when
  ``a`` is less than half the circle ahead of ``b``. Every incarnation has a newer
  one (the next, skipping 0, which means "never announced"), so a refutation can
  always out-bid an accusation; no value is a ceiling.
* A message about a member we know alive or suspect is believed only when its
  incarnation is at most ``MAX_INCARNATION_STEP`` ahead of the known one. A member
  raises its own incarnation by one per refutation or metadata update (or to one
  above an accusation it refutes, itself within the step), so a peer would have to
  miss 65,536 consecutive announcements of one member, while still hearing of it
  as alive, to fall outside the window; such a peer heals by its own probe of the
  member (a suspicion at the known incarnation, which the member refutes above).
  News about a dead or left member, or an unknown one, has nothing recent to be
  compared with and is taken at any newer incarnation.

All pure; each check is O(1).
"""

from __future__ import annotations

INCARNATION_MODULUS = 2**32
# Half the circle: a number at least this far ahead is behind (RFC 1982).
_HALF = INCARNATION_MODULUS // 2
# The largest jump believed about a member known alive or suspect (see the module doc).
MAX_INCARNATION_STEP = 2**16


def ahead(new: int, known: int) -> int:
    """How far ``new`` is ahead of ``known`` on the circle, in [0, 2**32)."""
    return (new - known) % INCARNATION_MODULUS


def newer(new: int, known: int) -> bool:
    """``new`` is strictly newer than ``known`` (serial-number arithmetic)."""
    return 0 < ahead(new, known) < _HALF


def older(new: int, known: int) -> bool:
    """``new`` is strictly older than ``known``: neither equal nor newer."""
    return new != known and not newer(new, known)


def within_step(new: int, known: int) -> bool:
    """``new`` is not newer than ``known``, or newer by at most MAX_INCARNATION_STEP."""
    return not newer(new, known) or ahead(new, known) <= MAX_INCARNATION_STEP


def next_incarnation(current: int) -> int:
    """The incarnation after ``current``: one more around the circle, skipping 0."""
    following = (current + 1) % INCARNATION_MODULUS
    return following or 1


def refutation(own: int, accused: int) -> int:
    """The incarnation that out-bids an accusation at ``accused`` of a member at ``own``."""
    candidate = next_incarnation(own)
    if not newer(candidate, accused):
        candidate = next_incarnation(accused)
    return candidate
