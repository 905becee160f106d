"""Keeps CPython's cyclic garbage collector from holding the loop at fleet size.

A full collection walks every object the collector tracks. An agent that holds
thousands of members holds hundreds of thousands of such objects, and a full
collection of them held the loop for 35 ms with 5,000 members (the fleet
benchmark). Long-lived member state is made of values that reference counting
frees on its own (membership views, ring entries, encoded records: no cycles),
so the collector gains nothing by walking it again and again.

The policy: after start-up, whenever the member table has grown or turned over
by a good part since the last time, and after a full collection that took more
than a few milliseconds, collect the young generations and
freeze everything that is left (``gc.freeze``) so that later full collections
walk only what is newer. The price is that a reference cycle already alive at a
freeze and unreachable later is never collected; what is alive at such a moment
besides member state is the agent's own long-lived machinery and a few in-flight
calls, and freezes are rare (member growth by a quarter, or as many member
changes as there are members), so the memory that can be held this way stays
small and bounded by the number of freezes.

The young generation is also collected less often: CPython collects it after 700
net allocations, which a busy agent makes in a handful of RPCs, so it collected
several times per hundred calls. After 10,000 (`YOUNG_THRESHOLD`) it collects about
fourteen times less often; a young collection walks at most that many objects (well
under a millisecond) and the middle generation, collected every tenth time, at most
ten times as many (a few milliseconds, inside the 20 ms bound). In `bench/rpc.py`
this raised the agent's calls per second by up to a tenth with 32 callers.

Once started, the agent also hands back to the system the memory that start-up
used and freed (imports, descriptor pools, parsing), which the C allocator keeps
by default: `release_free_memory`, glibc's `malloc_trim`. About 1 MB of an idle
agent's resident memory.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from typing import Any

log = logging.getLogger("controlplane.agent")

# Below this many members a full collection is short; nothing to do.
MIN_MEMBERS = 256
# Freeze again once the table grew by this fraction, or once this many member
# changes per member happened, since the last freeze.
GROWTH = 0.25
TURNOVER = 1.0
# A full collection longer than this says the unfrozen heap has grown large by
# other means (churn that stays under the turnover bound, caches): freeze again at
# the next member change, so the collection after it walks little.
SLOW_FULL_COLLECTION = 0.005
# Net allocations between collections of the young generation (CPython: 700).
YOUNG_THRESHOLD = 10_000


class HeapSettler:
    """Decides when to freeze the heap, from member counts and member changes."""

    def __init__(self) -> None:
        self._members_at_freeze = 0
        self._changes = 0
        self.freezes = 0
        # Full collections seen and the longest one, so a loop stall can be told
        # apart from a collector pause in the log.
        self.full_collections = 0
        self.longest_full_collection = 0.0
        self._collection_started = 0.0
        self._freeze_due = False
        self._thresholds: tuple[int, int, int] | None = None

    def start(self) -> None:
        """Freezes what start-up allocated (modules, the servers, the configuration),
        returns what it freed to the system, collects the young generation less often
        and starts timing full collections."""
        gc.callbacks.append(self._on_collection)
        self._freeze(0)
        release_free_memory()
        self._thresholds = gc.get_threshold()
        _, middle, old = self._thresholds
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)

    def stop(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def summary(self) -> str:
        return (
            f"heap: {self.freezes} freezes, {self.full_collections} full collections, "
            f"longest {self.longest_full_collection * 1000:.1f} ms"
        )

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._collection_started = time.perf_counter()
        else:
            self.full_collections += 1
            elapsed = time.perf_counter() - self._collection_started
            self.longest_full_collection = max(self.longest_full_collection, elapsed)
            # Not inside the collector's callback: at the next observation.
            self._freeze_due = self._freeze_due or elapsed > SLOW_FULL_COLLECTION

    def observe(self, members: int, changed: int) -> bool:
        """Notes `changed` member changes with `members` known; True if it froze."""
        self._changes += changed
        if members < MIN_MEMBERS:
            return False
        grown = members >= self._members_at_freeze * (1 + GROWTH)
        turned_over = self._changes >= members * TURNOVER
        if grown or turned_over or self._freeze_due:
            self._freeze(members)
            return True
        return False

    def _freeze(self, members: int) -> None:
        # Young garbage (including short-lived cycles) goes first, so it is not kept.
        gc.collect(1)
        gc.freeze()
        self._members_at_freeze = members
        self._changes = 0
        self._freeze_due = False
        self.freezes += 1
        log.debug("heap frozen at %d members (%d objects frozen)", members, gc.get_freeze_count())


def release_free_memory() -> bool:
    """Returns the C heap's free pages to the system (glibc `malloc_trim`); False
    where there is no glibc. Costs a few milliseconds: at start-up only."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False  # musl and other C libraries have no malloc_trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True
