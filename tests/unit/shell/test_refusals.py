"""Key and label mismatches named in the log, at a bounded rate (pure)."""

from __future__ import annotations

from collections import Counter

from controlplane.shell.refusals import (
    EXCHANGES,
    MAX_SOURCES,
    PACKETS,
    RefusalReport,
    changed_reason,
    mismatch_counts,
    refusal_reason,
)


def test_the_first_refusal_is_said_at_once_then_counted_per_interval() -> None:
    report = RefusalReport(interval=30.0)
    first = report.refused(PACKETS, "decrypt", "127.0.0.1:7947", now=100.0)
    assert first == (
        "1 gossip packet from 127.0.0.1:7947 failed to decrypt:"
        " is --encrypt the same key on every member?"
    )
    assert [report.refused(PACKETS, "decrypt", "127.0.0.1:7947", 100.0 + i) for i in range(5)] == [
        None
    ] * 5
    later = report.refused(PACKETS, "decrypt", "127.0.0.1:7947", now=130.0)
    assert later is not None
    assert later.startswith("6 gossip packets from 127.0.0.1:7947 failed to decrypt")
    assert report.refused(PACKETS, "decrypt", "127.0.0.1:7947", now=131.0) is None


def test_each_source_and_reason_has_its_own_line() -> None:
    report = RefusalReport()
    assert report.refused(PACKETS, "decrypt", "10.0.0.1:7946", 0.0) is not None
    assert report.refused(PACKETS, "decrypt", "10.0.0.2:7946", 0.0) is not None
    plaintext = report.refused(PACKETS, "plaintext", "10.0.0.1:7946", 0.0)
    assert plaintext == (
        "1 gossip packet from 10.0.0.1:7946 was not encrypted: this agent has --encrypt,"
        " so every member needs the same key"
    )
    exchange = report.refused(EXCHANGES, "encrypted_without_keyring", "10.0.0.1", 0.0)
    assert exchange is not None
    assert exchange.startswith("1 state exchange (push-pull) from 10.0.0.1 was encrypted,")
    label = report.refused(PACKETS, "label", "10.0.0.3:7946", 0.0)
    assert label is not None
    assert "is --cluster-label the same on every member?" in label


def test_garbage_is_not_a_mismatch() -> None:
    report = RefusalReport()
    for reason in ("truncated", "frame_version", "decode", "oversized"):
        assert report.refused(PACKETS, reason, "10.0.0.1:7946", 0.0) is None


def test_refusals_by_a_peer_name_the_peer_and_its_reason() -> None:
    report = RefusalReport(interval=10.0)
    details = "push-pull refused: push-pull request rejected: plaintext"
    line = report.refused_by_peer(refusal_reason(details), "127.0.0.1:7946", 0.0)
    assert line == (
        "127.0.0.1:7946 refused 1 state exchange (push-pull) of this agent: it requires"
        " encrypted gossip: give this agent the cluster's --encrypt key"
    )
    assert report.refused_by_peer("plaintext", "127.0.0.1:7946", 5.0) is None
    again = report.refused_by_peer("plaintext", "127.0.0.1:7946", 10.0)
    assert again is not None
    assert again.startswith("127.0.0.1:7946 refused 2 state exchanges (push-pull)")
    odd = report.refused_by_peer("protocol_version", "127.0.0.1:7946", 0.0)
    assert odd is not None
    assert odd.endswith("it answered: protocol_version")


def test_the_number_of_sources_is_bounded() -> None:
    report = RefusalReport(max_sources=MAX_SOURCES)
    for i in range(MAX_SOURCES * 3):
        assert report.refused(PACKETS, "decrypt", f"10.0.{i // 256}.{i % 256}:7946", 0.0)
    assert len(report._tallies) == MAX_SOURCES


def test_counters_tell_which_reason_moved() -> None:
    dropped: Counter[str] = Counter({"truncated": 4})
    before = mismatch_counts(dropped)
    dropped["truncated"] += 1
    assert changed_reason(before, mismatch_counts(dropped)) is None
    dropped["label"] += 1
    assert changed_reason(before, mismatch_counts(dropped)) == "label"
