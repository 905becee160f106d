"""`election.epoch` outside its valid range [0, MAX_EPOCH] stops the start (issue 13,
attacks 3 and 8): starting from 0 could reuse an epoch, starting above the range
would leave the agent granting nothing for ever."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.configerror import ConfigError
from controlplane.election import MAX_EPOCH, valid_epoch
from controlplane.election.fencing import next_epoch
from controlplane.shell.election import EpochStore


@pytest.mark.parametrize(
    ("epoch", "ok"), [(0, True), (1, True), (MAX_EPOCH, True), (MAX_EPOCH + 1, False), (-1, False)]
)
def test_valid_epoch(epoch: int, ok: bool) -> None:
    assert valid_epoch(epoch) is ok


def test_next_epoch_stays_in_range() -> None:
    assert next_epoch(MAX_EPOCH) == MAX_EPOCH
    assert next_epoch(5) == 6


def test_missing_file_is_zero(tmp_path: Path) -> None:
    assert EpochStore(str(tmp_path)).load() == 0


@pytest.mark.parametrize("text", ["0\n", "17\n", f"{MAX_EPOCH}\n", "  42  \n"])
def test_valid_files(tmp_path: Path, text: str) -> None:
    (tmp_path / "election.epoch").write_text(text)
    assert EpochStore(str(tmp_path)).load() == int(text)


@pytest.mark.parametrize(
    "text",
    [str(2**64 - 1), str(MAX_EPOCH + 1), "-1", "", "twelve", "1e9", "٣", "9" * 100],
)
def test_invalid_files_refuse_the_start(tmp_path: Path, text: str) -> None:
    (tmp_path / "election.epoch").write_text(text + "\n")
    with pytest.raises(ConfigError) as raised:
        EpochStore(str(tmp_path)).load()
    message = str(raised.value)
    assert "\n" not in message
    assert "election.epoch" in message
    assert str(MAX_EPOCH) in message


def test_save_then_load(tmp_path: Path) -> None:
    store = EpochStore(str(tmp_path))
    store.save(99)
    assert store.load() == 99


@pytest.mark.parametrize(
    ("raw", "rank"),
    [
        ("0", 0),
        ("1000000", 1000000),
        ("1000001", None),
        ("9" * 400, None),
        ("-1", None),
        ("", None),
    ],
)
def test_rank_tag_is_bounded(raw: str, rank: int | None) -> None:
    from controlplane.membership import MemberInfo, MemberStatus
    from controlplane.shell.election import member_rank

    member = MemberInfo(
        name="m",
        address=("10.0.0.1", 1),
        tags={"role": "server", "rank": raw},
        status=MemberStatus.ALIVE,
        incarnation=1,
    )
    assert member_rank(member) == rank
