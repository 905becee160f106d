"""Loop time of merging a fleet's push-pull state, whole versus in slices. Prints; asserts nothing.

    python bench/push_pull_merge.py             # N = 1,000 and 5,000
    python bench/push_pull_merge.py --sizes 10000

An agent joining a fleet receives one push-pull state that lists every member. The
agent merges it a slice at a time (``GossipRuntime._merge``: ``Membership.merge_some``
with an adaptive slice size) so that no single callback holds the event loop. For
each N this prints the loop time of the whole merge and its largest slice, for a
state of N new members (a join) and for the same state again (anti-entropy in a
converged cluster), beside the baseline measured in the same run: the same state
merged in one call, as before slicing. The reply (our own state) is timed too.
Fleet-scale goal: a 5,000-member merge in < 250 ms of loop time, slices < 20 ms.
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from controlplane.gossip import PROFILES, codec
from controlplane.membership import MemberEvent, Membership, MembershipConfig, messages
from controlplane.membership.tags import encode_tags
from controlplane.shell.heap import HeapSettler
from controlplane.shell.runtime import SliceSize
from controlplane.wire.v1 import gossip_pb2 as pb


def agent() -> Membership:
    return Membership(
        PROFILES["lan"](),
        MembershipConfig(snapshot_records=True),
        "agent",
        ("127.0.0.1", 7946),
        tags={"role": "server", "rank": "0", "api_version": "1.0"},
        rng=random.Random(1),
        now=0.0,
    )


def fleet_state(n: int) -> bytes:
    state = pb.PushPullState(protocol_version=codec.PROTOCOL_VERSION)
    meta = encode_tags({"role": "client", "dc": "dc1", "service_port": "8080"})
    times = {}
    for i in range(n):
        name = f"member-{i:05d}"
        state.members.add(
            name=name,
            address=pb.Address(host=f"127.1.{i // 250}.{i % 250 + 1}", port=7946),
            meta=meta,
            incarnation=1,
            status=pb.MEMBER_STATUS_ALIVE,
        )
        times[name] = 2
    state.user_state = messages.encode_state(5, times, [], 1, [])
    return codec.seal(codec.frame_header("", False), state.SerializeToString(), None)


def whole(layer: Membership, frame: bytes, now: float) -> float:
    started = time.perf_counter()
    layer.handle_push_pull(("127.1.0.1", 7946), frame, now)
    return time.perf_counter() - started


def sliced(layer: Membership, frame: bytes, now: float) -> tuple[float, float, int]:
    """(total loop time, largest slice, slices) merging as the runtime does, the
    agent's heap policy included (a freeze as the member table grows, so the
    collector's full passes do not walk the members just learned)."""
    settler = HeapSettler()
    settler.start()
    try:
        return _sliced(layer, frame, now, settler)
    finally:
        settler.stop()
        gc.unfreeze()


def _sliced(
    layer: Membership, frame: bytes, now: float, settler: HeapSettler
) -> tuple[float, float, int]:
    sizes = SliceSize()
    total = largest = 0.0
    slices = 0
    started = time.perf_counter()
    job = layer.open_push_pull(frame)
    total += time.perf_counter() - started
    while not job.done:
        started = time.perf_counter()
        effects = layer.merge_some(job, now, sizes.size)
        changed = sum(len(e.members) for e in effects if isinstance(e, MemberEvent))
        settler.observe(layer.member_count(), changed)
        elapsed = time.perf_counter() - started
        sizes.measured(elapsed)
        total += elapsed
        largest = max(largest, elapsed)
        slices += 1
    started = time.perf_counter()
    layer.push_pull_reply()
    reply = time.perf_counter() - started
    return total + reply, max(largest, reply), slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()
    for n in args.sizes:
        frame = fleet_state(n)
        base_new = whole(agent(), frame, 1.0)
        layer = agent()
        base_same = (whole(layer, frame, 1.0), whole(layer, frame, 2.0))[1]
        total_new, largest_new, slices_new = sliced(agent(), frame, 1.0)
        layer = agent()
        sliced(layer, frame, 1.0)
        total_same, largest_same, slices_same = sliced(layer, frame, 2.0)
        print(
            f"N={n} ({len(frame) / 1e6:.2f} MB): "
            f"join: whole {base_new * 1000:.0f} ms in one call; sliced {total_new * 1000:.0f} ms "
            f"in {slices_new} slices, largest {largest_new * 1000:.1f} ms "
            f"({total_new / base_new:.2f}x the whole)"
        )
        print(
            f"    converged: whole {base_same * 1000:.1f} ms; sliced {total_same * 1000:.1f} ms "
            f"in {slices_same} slices, largest {largest_same * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
