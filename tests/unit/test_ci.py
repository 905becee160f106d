"""tests/ci.py: every spelling CI uses turns skips into failures, in every tier."""

from __future__ import annotations

import pytest

from tests.ci import in_ci


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        (" true\n", True),
        ("", False),
        ("0", False),
        ("false", False),
        ("no", False),
    ],
)
def test_in_ci(value: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_not_in_ci_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert in_ci() is False
