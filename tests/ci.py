"""Whether the tests run in CI, where a missing dependency fails instead of skipping.

One rule for every tier: CI sets `CI` to `true`, `1` or `yes` (any case).
"""

from __future__ import annotations

import os


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}
