"""Options shared by every test tier.

`--secure-agents` runs the agent-process tests with mTLS and scoped tokens: every
agent that `controlplane.testing.agents` starts gets a certificate, requires client
certificates and a token file, and every channel and CLI call the tests make through
that module carries a client certificate and an operator token.
"""

from __future__ import annotations

import os

# Strict mode (GossipConfig.strict): a bug inside a gossip core raises instead of
# being counted as a dropped message. Set before anything builds a config; agent
# processes started by tests inherit it.
os.environ.setdefault("CONTROLPLANE_STRICT", "1")

from collections.abc import Iterator

import pytest

from controlplane.testing.agents import SecureSetup, secure_mode


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--secure-agents",
        action="store_true",
        help="start every test agent with mTLS and a token file (make pytest-secure)",
    )


@pytest.fixture(scope="session", autouse=True)
def _secure_agents(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    if not request.config.getoption("--secure-agents"):
        yield
        return
    secure_mode(SecureSetup.create(tmp_path_factory.mktemp("secure")))
    try:
        yield
    finally:
        secure_mode(None)
