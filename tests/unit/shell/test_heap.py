"""When the agent freezes its heap: after start, on member growth and on turnover."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest

from controlplane.shell import heap
from controlplane.shell.heap import HeapSettler


@pytest.fixture(autouse=True)
def _unfreeze():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_freezes_on_growth_and_turnover_never_for_small_clusters():
    settler = HeapSettler()
    settler.start()
    assert settler.freezes == 1
    assert gc.get_freeze_count() > 0
    assert not settler.observe(heap.MIN_MEMBERS - 1, 200)
    # Growth past the small-cluster bound freezes once, then not again until 25 % more.
    assert settler.observe(1000, 10)
    assert not settler.observe(1200, 10)
    assert settler.observe(1250, 10)
    # Changes add up: as many changes as members is a turnover of the table.
    assert not settler.observe(1250, 1000)
    assert settler.observe(1250, 250)
    assert settler.freezes == 4


def test_young_garbage_cycles_are_collected_before_a_freeze():
    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    HeapSettler().start()
    # Frozen, the cycle would never be collected: it must be gone before the freeze.
    assert gone() is None


def test_full_collections_are_timed_until_stopped():
    settler = HeapSettler()
    settler.start()
    try:
        gc.collect()
        assert settler.full_collections == 1
        assert settler.longest_full_collection > 0
        assert settler.summary().startswith("heap: 1 freezes, 1 full collections, longest ")
    finally:
        settler.stop()
    gc.collect()
    assert settler.full_collections == 1


def test_a_slow_full_collection_brings_the_next_freeze_forward(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settler = HeapSettler()
    settler.start()
    try:
        assert settler.observe(1000, 0)
        assert not settler.observe(1000, 1)
        # A quick full collection changes nothing; a slow one freezes at the next change.
        monkeypatch.setattr(heap, "SLOW_FULL_COLLECTION", 60.0)
        gc.collect()
        assert not settler.observe(1000, 1)
        monkeypatch.setattr(heap, "SLOW_FULL_COLLECTION", 0.0)
        gc.collect()
        assert settler.observe(1000, 1)
        assert not settler.observe(1000, 1)
    finally:
        settler.stop()


TRIM_PROBE = """
from controlplane.shell.heap import release_free_memory
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])
chunks = [bytearray(1000) for _ in range(60_000)]
pin = bytearray(1000)  # above the freed chunks: free() alone cannot shrink the heap
del chunks
before = rss()
print(release_free_memory(), before - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_memory_freed_at_start_up_goes_back_to_the_system():
    result = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    released, released_kib = result.stdout.split()
    assert released == "True"
    # 60 MB were freed below a live allocation; most of it must leave the process.
    assert int(released_kib) > 30_000


def test_the_young_generation_is_collected_less_often_while_started():
    before = gc.get_threshold()
    settler = HeapSettler()
    settler.start()
    try:
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, before[1], before[2])
        assert heap.YOUNG_THRESHOLD > 10 * 700  # CPython's default
    finally:
        settler.stop()
    assert gc.get_threshold() == before
