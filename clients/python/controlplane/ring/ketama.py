"""The ketama placement primitives: key points, virtual-node points, vnode counts.

This module owns the arithmetic that must agree bit for bit with other ketama
implementations (libketama, npm ``hashring`` v3, PyPI ``uhashring`` with
``hash_fn='ketama'``). ``docs/ring.md`` specifies every function here; the ring
itself (sorting, lookups, snapshots) lives in :mod:`controlplane.ring.hashring`.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import math
import struct
from collections.abc import Callable
from typing import Final, Protocol

__all__ = [
    "DEFAULT_POINTS_PER_VNODE",
    "DEFAULT_VNODES",
    "MAX_POINTS_PER_VNODE",
    "MAX_VNODES",
    "LookupRule",
    "VnodeFormula",
    "key_bytes",
    "key_point",
    "vnode_count",
    "vnode_name",
    "vnode_points",
]

# libketama, npm hashring and uhashring all default to 40 virtual nodes per node of
# average weight, each hashed once with MD5 and sliced into 4 points: 160 points.
DEFAULT_VNODES: Final = 40
DEFAULT_POINTS_PER_VNODE: Final = 4
# An MD5 digest is 16 bytes, which is exactly four 32-bit points.
MAX_POINTS_PER_VNODE: Final = 4
# The most virtual nodes per average node a ring shared over the API may have: the
# agent's configuration refuses more, and a client believes no more from the wire.
# 25 times the default; a ring's memory and build time grow with it.
MAX_VNODES: Final = 1000


class _Digest(Protocol):
    def digest(self) -> bytes: ...


def _pick_md5() -> Callable[[bytes], _Digest]:
    """Return the fastest MD5 constructor this interpreter offers.

    CPython's built-in ``_md5`` module hashes a short key in roughly half the time
    of the OpenSSL-backed ``hashlib.md5`` because it skips the EVP context set-up,
    and key lookups are dominated by that one hash. Some builds omit ``_md5``, so
    fall back to ``hashlib.md5``; both produce the same digest.
    """
    try:
        builtin_md5: Callable[[bytes], _Digest] = importlib.import_module("_md5").md5
    except ImportError:
        return hashlib.md5
    if builtin_md5(b"ketama").digest() != hashlib.md5(b"ketama").digest():
        return hashlib.md5
    return builtin_md5


md5: Final = _pick_md5()

# A point is the first four digest bytes read as a little-endian unsigned 32-bit
# integer; unpack_from ignores the remaining twelve bytes without slicing them.
_unpack_first_point: Final = struct.Struct("<I").unpack_from
_unpack_four_points: Final = struct.Struct("<4I").unpack


class VnodeFormula(enum.Enum):
    """How a node's virtual-node count is derived from its weight.

    The established ketama libraries agree on the formula
    ``floor(vnodes * node_count * weight / total_weight)`` but evaluate it
    differently, which changes the count by one in rare cases (for example seven
    equal-weight nodes: 40 vnodes each exactly, 39 in IEEE-754 doubles).
    """

    #: Exact integer arithmetic, as PyPI ``uhashring`` computes it. The default:
    #: every language can reproduce it without floating-point subtleties.
    EXACT = "exact"
    #: ``floor(((weight / total_weight) * vnodes) * node_count)`` in IEEE-754
    #: binary64, evaluated left to right, as npm ``hashring`` v3 computes it.
    FLOAT64 = "float64"


class LookupRule(enum.Enum):
    """Which continuum point owns a key whose point equals a continuum point.

    Ketama libraries agree that a key belongs to the next point clockwise but not
    on a key that lands exactly on a point: libketama and npm ``hashring`` give it
    to that point, Go's ``serialx/hashring`` (Ringman's ring) and PyPI
    ``uhashring`` to the one after it. Only such exact hits differ.
    """

    #: The first point greater than or equal to the key's (a lower bound); ketama.
    AT_OR_AFTER = "at_or_after"
    #: The first point strictly greater than the key's (an upper bound); serialx.
    AFTER = "after"


def key_bytes(key: str | bytes) -> bytes:
    """Return the bytes that are hashed for ``key``: UTF-8 for ``str``, as-is for ``bytes``.

    Raises ``ValueError`` for an empty key and ``TypeError`` for any other type.
    """
    if isinstance(key, str):
        data = key.encode("utf-8")
    elif isinstance(key, bytes):
        data = key
    else:
        raise TypeError(f"key must be str or bytes, got {type(key).__name__}")
    if not data:
        raise ValueError("key must not be empty")
    return data


def key_point(key: str | bytes) -> int:
    """Return the ring position of ``key``: MD5 digest bytes 0-3, little-endian, unsigned."""
    point: int = _unpack_first_point(md5(key_bytes(key)).digest())[0]
    return point


def vnode_name(node_id: str, index: int) -> bytes:
    """Return the bytes hashed for virtual node ``index`` of ``node_id``.

    That is the UTF-8 encoding of ``"<id>-<index>"``, the index in decimal.
    """
    return f"{node_id}-{index}".encode()


def vnode_points(node_id: str, index: int, points_per_vnode: int) -> tuple[int, ...]:
    """Return the first ``points_per_vnode`` ring points of one virtual node.

    Point ``j`` is digest bytes ``4j .. 4j+3`` read as a little-endian unsigned
    32-bit integer, where the digest is MD5 of :func:`vnode_name`.
    """
    points: tuple[int, ...] = _unpack_four_points(md5(vnode_name(node_id, index)).digest())
    return points[:points_per_vnode]


def vnode_count(
    weight: int,
    total_weight: int,
    node_count: int,
    vnodes: int,
    formula: VnodeFormula = VnodeFormula.EXACT,
) -> int:
    """Return how many virtual nodes a member of weight ``weight`` gets.

    ``floor(vnodes * node_count * weight / total_weight)``: a node of average
    weight gets ``vnodes``; heavier nodes proportionally more. Every member counts
    in ``node_count`` and ``total_weight``, so changing one member's weight or the
    membership can change every member's count (ketama behaves the same way).
    """
    if formula is VnodeFormula.EXACT:
        return (vnodes * node_count * weight) // total_weight
    # Same operation order as hashring's `percentage * vnodes * servers.length`;
    # Python floats are IEEE-754 binary64 with the same correctly rounded * and /.
    return math.floor(weight / total_weight * vnodes * node_count)
