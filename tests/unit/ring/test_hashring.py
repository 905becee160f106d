"""Unit tests of HashRing: construction, validation, lookups, immutability, snapshots."""

from __future__ import annotations

import pickle
from bisect import bisect_left
from dataclasses import replace
from typing import Any

import pytest

from controlplane.ring import (
    DEFAULT_RING_SETTINGS,
    MAX_WEIGHT,
    EmptyRingError,
    HashRing,
    LookupRule,
    RingNode,
    RingSettings,
    VnodeFormula,
    key_point,
    vnode_count,
)
from controlplane.ring.ketama import vnode_points

HOSTS = {"10.0.0.1:11211": 1, "10.0.0.2:11211": 2, "10.0.0.3:11211": 3}


def reference_owner(ring: HashRing, key: str | bytes) -> str:
    """The spec, done the slow way: first point >= the key's point, else the first point."""
    continuum = ring.points()
    points = [point for point, _ in continuum]
    index = bisect_left(points, key_point(key))
    return continuum[index % len(continuum)][1]


class TestLookups:
    def test_get_node_matches_the_reference_lookup(self) -> None:
        ring = HashRing({f"node-{i}": 1 + i % 4 for i in range(25)})

        for number in range(5_000):
            key = f"item-{number}"
            assert ring.get_node(key) == reference_owner(ring, key), key

    def test_keys_at_bucket_edges_and_ring_ends_match_the_reference(self) -> None:
        ring = HashRing(HOSTS)
        points = [point for point, _ in ring.points()]
        owners = [owner for _, owner in ring.points()]
        # Exercise the accelerator table directly at its hardest spots: exactly on a
        # point, one past it, and past the last point (wrap-around).
        for point in points:
            for probe in (point, point + 1):
                expected = owners[bisect_left(points, probe) % len(points)]
                assert ring._bucket_owner[probe >> ring._bucket_shift] in (None, expected)
                assert ring._slots[ring._owners[bisect_left(ring._points, probe)]] == expected
        table_owner = ring._bucket_owner[(points[-1] + 1) >> ring._bucket_shift]
        assert table_owner in (None, owners[0])

    def test_str_key_hashes_as_its_utf8_bytes(self) -> None:
        ring = HashRing(HOSTS)

        assert ring.get_node("ключ-é") == ring.get_node("ключ-é".encode())
        assert ring.get_nodes("ключ-é", 2) == ring.get_nodes("ключ-é".encode(), 2)

    def test_single_node_owns_everything(self) -> None:
        ring = HashRing(["solo"])

        assert {ring.get_node(f"k{i}") for i in range(200)} == {"solo"}
        assert ring.get_nodes("k", 5) == ["solo"]

    @pytest.mark.parametrize("key", ["", b""])
    def test_empty_key_is_rejected(self, key: str | bytes) -> None:
        ring = HashRing(HOSTS)

        with pytest.raises(ValueError, match="key"):
            ring.get_node(key)
        with pytest.raises(ValueError, match="key"):
            ring.get_nodes(key, 1)

    @pytest.mark.parametrize("key", [42, None, bytearray(b"x"), ["a"]])
    def test_non_text_key_is_rejected(self, key: object) -> None:
        ring = HashRing(HOSTS)

        with pytest.raises(TypeError, match="key"):
            ring.get_node(key)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key"):
            ring.get_nodes(key, 1)  # type: ignore[arg-type]

    def test_empty_ring_raises_empty_ring_error(self) -> None:
        ring = HashRing()

        with pytest.raises(EmptyRingError):
            ring.get_node("key")
        with pytest.raises(EmptyRingError):
            ring.get_nodes(b"key", 2)
        assert issubclass(EmptyRingError, LookupError)

    def test_lone_surrogate_key_is_rejected(self) -> None:
        with pytest.raises(UnicodeEncodeError):
            HashRing(HOSTS).get_node("\ud800")


class TestGetNodes:
    @pytest.mark.parametrize("n", [0, -1])
    def test_n_below_one_is_rejected_by_name(self, n: int) -> None:
        with pytest.raises(ValueError, match=r"\bn\b"):
            HashRing(HOSTS).get_nodes("key", n)

    @pytest.mark.parametrize("n", [True, 2.0, "2"])
    def test_n_must_be_an_int(self, n: object) -> None:
        with pytest.raises(TypeError, match=r"\bn\b"):
            HashRing(HOSTS).get_nodes("key", n)  # type: ignore[arg-type]

    def test_n_larger_than_the_ring_returns_every_node(self) -> None:
        ring = HashRing(HOSTS)

        nodes = ring.get_nodes("key", 10)

        assert sorted(nodes) == sorted(HOSTS)
        assert nodes[0] == ring.get_node("key")

    def test_replicas_walk_clockwise(self) -> None:
        ring = HashRing({f"node-{i}": 1 for i in range(8)})
        continuum = ring.points()
        start = bisect_left([point for point, _ in continuum], key_point("walk"))
        expected: list[str] = []
        for offset in range(len(continuum)):
            owner = continuum[(start + offset) % len(continuum)][1]
            if owner not in expected:
                expected.append(owner)

        assert ring.get_nodes("walk", 8) == expected
        assert ring.get_nodes("walk", 3) == expected[:3]

    def test_node_without_vnodes_is_never_returned(self) -> None:
        ring = HashRing({"big": 1000, "tiny": 1})

        assert ring.vnode_counts == {"big": 79, "tiny": 0}
        assert "tiny" in ring
        assert ring.get_nodes("key", 2) == ["big"]


class TestConstruction:
    def test_iterable_of_ids_gives_weight_one(self) -> None:
        ring = HashRing(["b", "a"])

        assert ring.weights == {"a": 1, "b": 1}
        assert list(ring) == ["a", "b"]
        assert len(ring) == 2

    def test_bare_string_is_not_a_node_list(self) -> None:
        with pytest.raises(TypeError):
            HashRing("node-a")

    def test_duplicate_ids_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="twice"):
            HashRing(["a", "a"])
        with pytest.raises(ValueError, match="twice"):
            HashRing.from_nodes([RingNode("a"), RingNode("a", 2)])

    @pytest.mark.parametrize(
        "node_id", ["", "has space", "new\nline", "tab\t", "del\x7f", "\ud800"]
    )
    def test_invalid_ids_are_rejected(self, node_id: str) -> None:
        with pytest.raises(ValueError, match="node id"):
            HashRing([node_id])

    def test_non_text_id_is_rejected(self) -> None:
        with pytest.raises(TypeError, match="node id"):
            HashRing({7: 1})  # type: ignore[dict-item]

    @pytest.mark.parametrize("weight", [0, -1, MAX_WEIGHT + 1])
    def test_out_of_range_weights_are_rejected(self, weight: int) -> None:
        with pytest.raises(ValueError, match="weight"):
            HashRing({"a": weight})

    @pytest.mark.parametrize("weight", [1.5, True, "2"])
    def test_non_int_weights_are_rejected(self, weight: object) -> None:
        with pytest.raises(TypeError, match="weight"):
            HashRing({"a": weight})

    def test_largest_weight_is_accepted(self) -> None:
        ring = HashRing({"a": MAX_WEIGHT, "b": 1})

        assert ring.vnode_counts == {"a": 79, "b": 0}

    @pytest.mark.parametrize(
        ("field", "value"),
        [("vnodes", 0), ("points_per_vnode", 0), ("points_per_vnode", 5), ("vnodes", True)],
    )
    def test_invalid_settings_are_rejected(self, field: str, value: int) -> None:
        changes: dict[str, Any] = {field: value}
        with pytest.raises(ValueError, match=field):
            replace(DEFAULT_RING_SETTINGS, **changes)

    def test_settings_must_be_settings(self) -> None:
        with pytest.raises(TypeError, match="vnode_formula"):
            RingSettings(vnode_formula="exact")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="lookup"):
            RingSettings(lookup="after")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="settings"):
            HashRing(HOSTS, settings={"vnodes": 40})  # type: ignore[arg-type]

    def test_defaults_are_ketama(self) -> None:
        assert RingSettings(40, 4, VnodeFormula.EXACT) == DEFAULT_RING_SETTINGS
        ring = HashRing(["a", "b", "c"])
        assert ring.vnode_counts == {"a": 40, "b": 40, "c": 40}
        assert ring.point_count == 480

    def test_metadata_is_kept_alongside_and_copied(self) -> None:
        port = {"port": "8080"}
        ring = HashRing(HOSTS, metadata={"10.0.0.1:11211": port})
        port["port"] = "9090"

        assert ring.metadata("10.0.0.1:11211") == {"port": "8080"}
        assert ring.metadata("10.0.0.2:11211") == {}
        assert ring.nodes["10.0.0.1:11211"] == RingNode("10.0.0.1:11211", 1, {"port": "8080"})
        with pytest.raises(TypeError):
            ring.metadata("10.0.0.1:11211")["port"] = "1"  # type: ignore[index]

    def test_metadata_for_unknown_nodes_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="unknown"):
            HashRing(["a"], metadata={"b": {"port": "1"}})

    def test_metadata_must_be_text(self) -> None:
        with pytest.raises(TypeError, match="metadata"):
            RingNode("a", 1, {"port": 8080})  # type: ignore[dict-item]

    def test_metadata_does_not_change_placement_or_checksum(self) -> None:
        plain = HashRing(HOSTS)
        tagged = HashRing(HOSTS, metadata={"10.0.0.3:11211": {"zone": "b"}})

        assert plain.checksum == tagged.checksum
        assert plain.points() == tagged.points()
        assert plain != tagged


class TestImmutability:
    def test_attributes_cannot_be_set_or_deleted(self) -> None:
        ring = HashRing(HOSTS)

        with pytest.raises(AttributeError):
            ring._points = ring._points
        with pytest.raises(AttributeError):
            del ring._owners
        with pytest.raises(AttributeError):
            ring.anything = 1

    def test_with_node_returns_a_new_ring(self) -> None:
        ring = HashRing(HOSTS)

        grown = ring.with_node("10.0.0.4:11211", 2, {"port": "11211"})

        assert "10.0.0.4:11211" not in ring
        assert grown.weights == {**HOSTS, "10.0.0.4:11211": 2}
        assert grown.metadata("10.0.0.4:11211") == {"port": "11211"}
        assert grown.settings is ring.settings

    def test_with_node_replaces_an_existing_member(self) -> None:
        ring = HashRing(HOSTS, metadata={"10.0.0.1:11211": {"port": "1"}})

        reweighted = ring.with_node("10.0.0.1:11211", 5)

        assert reweighted.weights["10.0.0.1:11211"] == 5
        assert reweighted.metadata("10.0.0.1:11211") == {}
        assert reweighted.checksum != ring.checksum

    def test_without_node_returns_a_new_ring(self) -> None:
        ring = HashRing(HOSTS)

        shrunk = ring.without_node("10.0.0.2:11211")

        assert "10.0.0.2:11211" in ring
        assert "10.0.0.2:11211" not in shrunk
        with pytest.raises(KeyError):
            shrunk.without_node("10.0.0.2:11211")

    def test_settings_survive_derivation(self) -> None:
        settings = RingSettings(vnodes=10, points_per_vnode=3)
        ring = HashRing(["a"], settings=settings).with_node("b").without_node("a")

        assert ring.settings == settings
        assert ring.point_count == 30

    @pytest.mark.parametrize("lookup", list(LookupRule))
    def test_a_key_on_a_point_follows_the_lookup_rule(self, lookup: LookupRule) -> None:
        """Key "<id>-<j>" hashes like vnode j of <id>: it lands on that vnode's first
        point, which owns it under AT_OR_AFTER; AFTER gives it to the next point."""
        settings = RingSettings(points_per_vnode=3, lookup=lookup)
        built = HashRing(HOSTS, settings=settings)
        derived = HashRing(settings=settings)
        for node_id, weight in HOSTS.items():
            derived = derived.with_node(node_id, weight)
        continuum = built.points()
        points = [point for point, _ in continuum]

        for node_id in HOSTS:
            for index in range(built.vnode_counts[node_id]):
                key = f"{node_id}-{index}"
                at = bisect_left(points, key_point(key))
                assert continuum[at] == (key_point(key), node_id)
                step = 1 if lookup is LookupRule.AFTER else 0
                expected = continuum[(at + step) % len(continuum)][1]
                assert built.get_node(key) == derived.get_node(key) == expected
                assert built.get_nodes(key, 3)[0] == expected

    def test_pickle_round_trip(self) -> None:
        ring = HashRing(HOSTS, metadata={"10.0.0.1:11211": {"port": "1"}})

        copy = pickle.loads(pickle.dumps(ring))

        assert copy == ring
        assert copy.points() == ring.points()
        assert copy.metadata("10.0.0.1:11211") == {"port": "1"}


class TestChecksum:
    def test_checksum_definition(self) -> None:
        import hashlib

        ring = HashRing({"b": 2, "a": 1})
        text = "ketama-md5 vnodes=40 points_per_vnode=4 vnode_formula=exact\na 1\nb 2\n"

        assert ring.checksum == int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")

    def test_equal_rings_hash_equal(self) -> None:
        first = HashRing({"a": 1, "b": 2})
        second = HashRing.from_nodes([RingNode("b", 2), RingNode("a", 1)])

        assert first == second
        assert hash(first) == hash(second)
        assert first != "a ring"

    def test_settings_are_part_of_the_checksum(self) -> None:
        exact = HashRing(HOSTS)
        float64 = HashRing(HOSTS, settings=RingSettings(vnode_formula=VnodeFormula.FLOAT64))

        assert exact.checksum != float64.checksum

    def test_the_lookup_rule_is_named_only_when_not_the_default(self) -> None:
        import hashlib

        after = HashRing({"b": 2, "a": 1}, settings=RingSettings(lookup=LookupRule.AFTER))
        text = (
            "ketama-md5 vnodes=40 points_per_vnode=4 vnode_formula=exact lookup=after\na 1\nb 2\n"
        )

        assert after.checksum == int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        assert RingSettings().checksum_header() == (
            "ketama-md5 vnodes=40 points_per_vnode=4 vnode_formula=exact"
        )

    def test_repr_names_the_checksum(self) -> None:
        ring = HashRing(HOSTS)

        assert repr(ring) == f"HashRing(nodes=3, points=480, checksum=0x{ring.checksum:016x})"


class TestKetamaArithmetic:
    def test_vnode_formulas_differ_only_by_rounding(self) -> None:
        assert vnode_count(1, 7, 7, 40) == 40
        assert vnode_count(1, 7, 7, 40, VnodeFormula.FLOAT64) == 39
        assert vnode_count(1, 3, 3, 40, VnodeFormula.FLOAT64) == 40

    def test_points_per_vnode_takes_a_digest_prefix(self) -> None:
        assert vnode_points("a", 0, 2) == vnode_points("a", 0, 4)[:2]


class TestWithChanges:
    def test_adds_replaces_and_removes_in_one_derivation(self) -> None:
        ring = HashRing(HOSTS)

        changed = ring.with_changes(
            [RingNode("10.0.0.4:11211", 4), RingNode("10.0.0.1:11211", 2, {"zone": "a"})],
            ["10.0.0.3:11211"],
        )

        fresh = HashRing.from_nodes(
            [
                RingNode("10.0.0.1:11211", 2, {"zone": "a"}),
                RingNode("10.0.0.2:11211", 2),
                RingNode("10.0.0.4:11211", 4),
            ]
        )
        assert changed == fresh
        assert changed.points() == fresh.points()
        assert changed.checksum == fresh.checksum
        assert ring == HashRing(HOSTS)  # the original is untouched

    def test_no_change_returns_the_same_ring(self) -> None:
        ring = HashRing(HOSTS)

        assert ring.with_changes() is ring
        assert ring.with_changes([RingNode("10.0.0.2:11211", 2)]) is ring

    def test_metadata_only_change_keeps_placement(self) -> None:
        ring = HashRing(HOSTS)

        tagged = ring.with_changes([RingNode("10.0.0.2:11211", 2, {"port": "1"})])

        assert tagged.metadata("10.0.0.2:11211") == {"port": "1"}
        assert tagged.points() == ring.points()
        assert tagged.checksum == ring.checksum

    def test_unchanged_members_are_not_hashed_again(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from controlplane.ring import hashring

        ring = HashRing({f"node-{i}": 1 for i in range(50)})
        hashed: list[str] = []

        def counting(node_id: str, index: int, points_per_vnode: int) -> tuple[int, ...]:
            hashed.append(node_id)
            return vnode_points(node_id, index, points_per_vnode)

        monkeypatch.setattr(hashring, "vnode_points", counting)
        grown = ring.with_node("node-new")
        shrunk = grown.without_node("node-7")

        assert hashed == ["node-new"] * 40 + ["node-7"] * 40
        assert shrunk.points() == HashRing.from_nodes(shrunk.nodes.values()).points()

    def test_the_lookup_table_is_patched_not_rebuilt(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from controlplane.ring import hashring

        ring = HashRing({f"node-{i}": 1 for i in range(100)})
        rebuilt: list[int] = []
        original = hashring._bucket_table

        def counting(*args: Any) -> Any:
            rebuilt.append(1)
            return original(*args)

        monkeypatch.setattr(hashring, "_bucket_table", counting)
        grown = ring.with_node("node-new")

        assert rebuilt == []
        fresh = HashRing.from_nodes(grown.nodes.values())
        assert grown._bucket_owner == fresh._bucket_owner

    def test_rescaling_most_of_the_ring_falls_back_to_a_full_build(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from controlplane.ring import hashring

        # Two members: the newcomer alone is half of the new continuum.
        ring = HashRing({"a": 1})
        built: list[int] = []
        original = HashRing._build

        def counting(self: HashRing, members: list[RingNode], settings: RingSettings) -> None:
            built.append(len(members))
            original(self, members, settings)

        monkeypatch.setattr(hashring.HashRing, "_build", counting)
        grown = ring.with_changes([RingNode("b", 3)])

        assert built == [2]
        assert grown.vnode_counts == {"a": 20, "b": 60}

    def test_invalid_changes_are_rejected(self) -> None:
        ring = HashRing(HOSTS)

        with pytest.raises(KeyError):
            ring.with_changes(remove=["10.9.9.9:1"])
        with pytest.raises(ValueError, match="twice"):
            ring.with_changes([RingNode("x"), RingNode("x", 2)])
        with pytest.raises(ValueError, match="twice"):
            ring.with_changes(remove=["10.0.0.1:11211", "10.0.0.1:11211"])
        with pytest.raises(ValueError, match="both added and removed"):
            ring.with_changes([RingNode("10.0.0.1:11211")], ["10.0.0.1:11211"])
        with pytest.raises(TypeError):
            ring.with_changes(["10.0.0.5:1"])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            ring.with_changes(remove="10.0.0.1:11211")
        with pytest.raises(TypeError):
            ring.with_changes(remove=[7])  # type: ignore[list-item]

    def test_emptying_and_refilling_a_ring(self) -> None:
        ring = HashRing(HOSTS)

        empty = ring.with_changes(remove=list(HOSTS))
        refilled = empty.with_changes([RingNode(node_id, w) for node_id, w in HOSTS.items()])

        assert empty == HashRing()
        assert empty.checksum == HashRing().checksum
        with pytest.raises(EmptyRingError):
            empty.get_node("k")
        assert refilled == ring
        assert refilled.points() == ring.points()
        assert refilled._bucket_owner == ring._bucket_owner
